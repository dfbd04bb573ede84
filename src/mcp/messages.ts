// JSON-RPC messages of MCP: which POST bodies are read, how a body becomes messages, and the
// names a metric label may take. Pure functions over bytes and parsed values: no HTTP here.

import { hasDuplicateKeys } from '../lib/json-text.js';
import { argumentsTexts } from './arguments-text.js';
import type { ClientMessage, MessageMeta } from './guard.js';
import { clientOf } from './sessions.js';

/** Every method MCP defines (2024-11-05 to 2026-07-28), client's and server's: the `method` label's values. */
export const MCP_METHODS: ReadonlySet<string> = new Set([
  'server/discover',
  'subscriptions/listen',
  'initialize',
  'ping',
  'tools/list',
  'tools/call',
  'prompts/list',
  'prompts/get',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'logging/setLevel',
  'completion/complete',
  'sampling/createMessage',
  'elicitation/create',
  'roots/list',
  'tasks/get',
  'tasks/result',
  'tasks/list',
  'tasks/cancel',
  'notifications/initialized',
  'notifications/cancelled',
  'notifications/progress',
  'notifications/message',
  'notifications/resources/updated',
  'notifications/resources/list_changed',
  'notifications/tools/list_changed',
  'notifications/prompts/list_changed',
  'notifications/roots/list_changed',
  'notifications/elicitation/complete',
  'notifications/tasks/status',
  'notifications/subscriptions/acknowledged',
]);

/** The method label: an MCP method name, `unparsed` for a body that was not read, else `other`. */
export function methodLabel(method: string): string {
  return MCP_METHODS.has(method) || method === 'unparsed' ? method : 'other';
}

/** `application/json` with any parameters, the media type compared case-insensitively (RFC 9110 section 8.3.1). */
export function isJsonContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  // The common spellings first: no lower-casing, no slicing.
  if (value === 'application/json' || value.startsWith('application/json;')) return true;
  const semicolon = value.indexOf(';');
  const media = (semicolon === -1 ? value : value.slice(0, semicolon)).trim();
  return media.length === 16 && media.toLowerCase() === 'application/json';
}

/** A message the client sent that answers a request of the server (sampling, elicitation, roots). */
export interface ClientResponse {
  readonly id: string | number;
  readonly error: boolean;
  readonly errorCode: number | undefined;
}

export interface ParsedBody {
  /** Requests and notifications, in the order sent. */
  readonly messages: readonly ClientMessage[];
  /** Responses to the server's own requests: plumbing, not judged. */
  readonly responses: readonly ClientResponse[];
  readonly batch: boolean;
}

export type BodyProblem = 'not_json' | 'duplicate_keys' | 'not_json_rpc';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isId(value: unknown): value is string | number {
  return typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
}

// W3C Trace Context: version, a trace id of 32 lower-case hex digits, a parent id, flags;
// versions after 00 may append fields.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}(-[^]*)?$/;
const ALL_ZERO = /^0+$/;

/** The trace id of a `traceparent` value, when it is well-formed. */
export function traceIdOf(traceparent: unknown): string | undefined {
  if (typeof traceparent !== 'string' || traceparent.length > 512) return undefined;
  const match = TRACEPARENT.exec(traceparent);
  if (match === null) return undefined;
  const [, version, traceId, rest] = match;
  if (version === 'ff' || (version === '00' && rest !== undefined) || ALL_ZERO.test(traceId!)) return undefined;
  return traceId;
}

function metaOf(raw: unknown): MessageMeta | undefined {
  if (!isObject(raw)) return undefined;
  const version = raw['io.modelcontextprotocol/protocolVersion'];
  return {
    protocolVersion: typeof version === 'string' ? version : undefined,
    capabilities: isObject(raw['io.modelcontextprotocol/clientCapabilities']),
    client: clientOf(raw['io.modelcontextprotocol/clientInfo']),
    traceId: traceIdOf(raw.traceparent),
  };
}

/** One parsed JSON-RPC request or notification, with the names a guard and the audit read. */
export function clientMessage(method: string, id: string | number | undefined, rawParams: unknown, argumentsText?: string): ClientMessage {
  const params = isObject(rawParams) ? rawParams : undefined;
  const name = typeof params?.name === 'string' ? params.name : undefined;
  const uri = typeof params?.uri === 'string' ? params.uri : undefined;
  const args = isObject(params?.arguments) ? params.arguments : undefined;
  const isResource = method === 'resources/read' || method === 'resources/subscribe' || method === 'resources/unsubscribe';
  const takesArguments = method === 'tools/call' || method === 'prompts/get';
  const message: {
    -readonly [K in keyof ClientMessage]: ClientMessage[K];
  } = {
    method,
    id,
    params,
    tool: method === 'tools/call' ? name : undefined,
    prompt: method === 'prompts/get' ? name : undefined,
    resource: isResource ? uri : undefined,
    arguments: takesArguments ? args : undefined,
    argumentsText: takesArguments && args !== undefined ? argumentsText : undefined,
  };
  // Only messages with these members pay for them: 2025 traffic has neither.
  if (params !== undefined && params._meta !== undefined) message.meta = metaOf(params._meta);
  if (params !== undefined && params.inputResponses !== undefined) message.inputResponses = true;
  return message;
}

/**
 * A POST body as JSON-RPC: one message or a batch (an array, as the 2025-03-26 transport
 * allowed). A body is refused when it is not UTF-8 JSON, names a member twice (two parsers
 * would disagree on which one counts, and the upstream's parser is not ours) or holds anything
 * but JSON-RPC 2.0 messages. `withArgumentsText` (the audit's): each message also carries its
 * arguments' text as sent.
 */
export function parseBody(body: Buffer, withArgumentsText = false): ParsedBody | BodyProblem {
  let text: string;
  let value: unknown;
  try {
    text = utf8.decode(body);
    value = JSON.parse(text);
  } catch {
    return 'not_json';
  }
  if (typeof value !== 'object' || value === null) return 'not_json_rpc';
  if (hasDuplicateKeys(text, value)) return 'duplicate_keys';
  const batch = Array.isArray(value);
  const elements: unknown[] = batch ? (value as unknown[]) : [value];
  if (elements.length === 0) return 'not_json_rpc';
  const messages: ClientMessage[] = [];
  const responses: ClientResponse[] = [];
  let texts: (string | undefined)[] | undefined;
  for (let index = 0; index < elements.length; index++) {
    const element = elements[index];
    if (!isObject(element) || element.jsonrpc !== '2.0') return 'not_json_rpc';
    const { method, id } = element;
    if (typeof method === 'string') {
      if (id !== undefined && !isId(id)) return 'not_json_rpc';
      const params = element.params;
      // Scanned once a body, and only when some message has an arguments object.
      if (withArgumentsText && texts === undefined && isObject(params) && isObject(params.arguments)) texts = argumentsTexts(text, batch);
      messages.push(clientMessage(method, id, params, texts?.[index]));
    } else if (isId(id) && ('result' in element || 'error' in element)) {
      const error = isObject(element.error) ? element.error : undefined;
      responses.push({ id, error: error !== undefined, errorCode: typeof error?.code === 'number' ? error.code : undefined });
    } else {
      return 'not_json_rpc';
    }
  }
  return { messages, responses, batch };
}
