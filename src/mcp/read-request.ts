// The one reading of a request body: the JSON-RPC messages the guards, the audit and the metrics
// see, or a refusal, before any guard. Whatever the sidecar decides on must be what the server
// reads, so a body two mainstream servers could read differently is refused rather than read one
// way (README: Security guarantees, One reading):
//
// - a member name written twice, or two names equal under Go's encoding/json folding (`name` and
//   `Name`, `ſ` for `s`), in any object: mcp-go keeps the last, the TypeScript SDK the exact one;
// - where the sidecar reads a name (the message, `params`, `params.ref`, `params.clientInfo`,
//   `error`), a name that folds to that one without being it (`Method`, `clientinfo`);
// - a `\u` escape of half a surrogate pair (Go reads U+FFFD, JavaScript the half);
// - two requests with the same id in one batch (their answers cannot be told apart);
// - a batch under a protocol version without batches (2025-06-18 and later);
// - a resource URI with dot segments, plain or percent-encoded, or a percent-encoded character
//   that needs none (the server resolves it, the policy would judge the written form).
//
// Pure functions over bytes and parsed values: no HTTP here.

import { countMemberNames } from '../lib/json-text.js';
import { RPC_CODES } from '../lib/errors.js';
import { goFoldKey, mayFold } from '../lib/go-fold.js';
import { argumentsTexts } from './arguments-text.js';
import type { Outcome } from './audit.js';
import type { ClientMessage } from './guard.js';
import { clientMessage, type ClientResponse } from './messages.js';
import { allowsBatches } from './protocol-version.js';
import { CLIENT_NAME_BYTES, CLIENT_VERSION_BYTES } from './sessions.js';
import { cutUtf8 } from '../lib/utf8.js';

/** The code of a refusal of the one reading (lib/errors.ts RPC_CODES; docs/mcp.md: Error codes). */
export const INVALID_REQUEST_CODE = RPC_CODES.requestRefused;
/** A session another subject created (README: Sessions). */
export const SESSION_FORBIDDEN_CODE = RPC_CODES.sessionForbidden;

/** Why the sidecar answers a request itself, before any guard: the HTTP status, the JSON-RPC error, the audit outcome. */
export interface Refusal {
  readonly status: 400 | 403;
  readonly rpcCode: number;
  readonly message: string;
  readonly outcome: Outcome;
  /** The id of the body's one request, for the JSON-RPC error; null when there is none or several. */
  readonly id: string | number | null;
}

/** A body read as JSON-RPC. */
export interface ReadRequest {
  readonly kind: 'read';
  /** Requests and notifications, in the order sent. */
  readonly messages: readonly ClientMessage[];
  /** Responses to the server's own requests: plumbing, not judged. */
  readonly responses: readonly ClientResponse[];
  readonly batch: boolean;
}

/** A body that is not JSON-RPC at all: forwarded unread (`unparsed`) without a guard, refused with one. */
export interface Unreadable {
  readonly kind: 'unreadable';
  readonly problem: 'not_json' | 'not_json_rpc';
}

export function isRefusal(result: ReadRequest | Unreadable | Refusal): result is Refusal {
  return 'outcome' in result;
}

function refusal(message: string, id: string | number | null = null): Refusal {
  return { status: 400, rpcCode: INVALID_REQUEST_CODE, message, outcome: 'invalid_request', id };
}

/** A body on a method other than POST while a guard must judge every message: nothing reads it, so nothing forwards it. */
export const BODY_ON_METHOD: Refusal = refusal('a request body is accepted only on POST (a tool policy or a rate limit is configured)');
/** A session id of another subject (and issuer): the session's messages are not theirs to send or read. */
export const SESSION_FORBIDDEN: Refusal = {
  status: 403,
  rpcCode: SESSION_FORBIDDEN_CODE,
  message: 'this MCP session belongs to another user: start a session of your own with initialize',
  outcome: 'forbidden_session',
  id: null,
};
/** An Mcp-Session-Id that no server issues (MCP: visible ASCII; here also at most MAX_SESSION_ID_LENGTH). */
export const BAD_SESSION_ID: Refusal = refusal('Mcp-Session-Id must be 1 to 256 visible ASCII characters');

export const MAX_SESSION_ID_LENGTH = 256;

/** Whether an Mcp-Session-Id is one the sidecar keeps and writes: visible ASCII (0x21-0x7E), at most MAX_SESSION_ID_LENGTH. */
export function isSessionId(id: string): boolean {
  return id.length > 0 && id.length <= MAX_SESSION_ID_LENGTH && /^[\x21-\x7e]+$/.test(id);
}

type Level = 'message' | 'params' | 'ref' | 'clientInfo' | 'error';

// The names the sidecar (and the 2026 header checks) read at each level, and where each leads.
const READ_NAMES: Record<Level, readonly string[]> = {
  message: ['jsonrpc', 'id', 'method', 'params', 'result', 'error'],
  params: ['name', 'uri', 'arguments', '_meta', 'cursor', 'ref', 'clientInfo', 'protocolVersion', 'requestId'],
  ref: ['type', 'name', 'uri'],
  clientInfo: ['name', 'version'],
  error: ['code', 'message', 'data'],
};
// Maps, not object literals: a member named `__proto__` or `toString` must find nothing.
const CHILD_LEVEL: Partial<Record<Level, ReadonlyMap<string, Level>>> = {
  message: new Map([
    ['params', 'params'],
    ['error', 'error'],
  ]),
  params: new Map([
    ['ref', 'ref'],
    ['clientInfo', 'clientInfo'],
  ]),
};
function perLevel<T>(make: (names: readonly string[]) => T): Record<Level, T> {
  return {
    message: make(READ_NAMES.message),
    params: make(READ_NAMES.params),
    ref: make(READ_NAMES.ref),
    clientInfo: make(READ_NAMES.clientInfo),
    error: make(READ_NAMES.error),
  };
}
/** Per level: the fold key of each read name, to the name itself. */
const READ_FOLDS = perLevel((names): ReadonlyMap<string, string> => new Map(names.map((name) => [goFoldKey(name), name])));
/** Per level: the read names lower-cased, the only plain (lower-case ASCII) spellings that can fold to one. */
const READ_LOWER = perLevel((names): ReadonlySet<string> => new Set(names.map((name) => name.toLowerCase())));
const READ_EXACT = perLevel((names): ReadonlySet<string> => new Set(names));
// In Unicode mode a surrogate pair is one code point: only a lone half matches.
const LONE_HALF = /\p{Cs}/u;

/**
 * The members of every object, walked without recursion (depth is the sender's choice): how many
 * there are (fewer than written means a name was written twice), and the first name that two
 * servers could read differently. `checkStrings`: the text has `\u` escapes, so every string is
 * checked for half a surrogate pair.
 */
function memberProblem(root: object, batch: boolean, checkStrings: boolean): { members: number; problem: string | undefined } {
  let members = 0;
  const objects: object[] = [root];
  const levels: (Level | undefined)[] = [batch ? undefined : 'message'];
  let folds: Set<string> | undefined;
  for (let value = objects.pop(); value !== undefined; value = objects.pop()) {
    const level = levels.pop();
    if (Array.isArray(value)) {
      const childLevel = value === root ? 'message' : undefined;
      for (const child of value as unknown[]) {
        if (typeof child === 'object' && child !== null) {
          objects.push(child);
          levels.push(childLevel);
        } else if (checkStrings && typeof child === 'string' && LONE_HALF.test(child)) return { members, problem: LONE_SURROGATE };
      }
      continue;
    }
    let special = false;
    const children = level === undefined ? undefined : CHILD_LEVEL[level];
    // for-in, not Object.keys: no array per object. JSON.parse makes plain objects, so every
    // enumerable name is an own one (`__proto__` included).
    for (const name in value) {
      members++;
      if (mayFold(name)) special = true;
      else if (level !== undefined && READ_LOWER[level].has(name) && !READ_EXACT[level].has(name)) {
        return { members, problem: variantProblem(name) };
      }
      const child = (value as Record<string, unknown>)[name];
      if (typeof child === 'object' && child !== null) {
        objects.push(child);
        levels.push(children?.get(name));
      } else if (checkStrings && typeof child === 'string' && LONE_HALF.test(child)) return { members, problem: LONE_SURROGATE };
    }
    if (!special) continue;
    // Some name has a capital or a character above ASCII: compare every name as Go does.
    if (checkStrings) for (const name in value) if (LONE_HALF.test(name)) return { members, problem: LONE_SURROGATE };
    (folds ??= new Set()).clear();
    const readFolds = level === undefined ? undefined : READ_FOLDS[level];
    for (const name in value) {
      const key = goFoldKey(name);
      if (folds.has(key))
        return { members, problem: 'two member names of one object are the same name to a Go server (letter case and Unicode folding)' };
      folds.add(key);
      const read = readFolds?.get(key);
      if (read !== undefined && read !== name) return { members, problem: variantProblem(name) };
    }
  }
  return { members, problem: undefined };
}

const LONE_SURROGATE = 'a \\u escape encodes half a surrogate pair, which JSON parsers read differently';

function variantProblem(name: string): string {
  // The name is the client's: only a bounded, plain spelling is repeated in the message.
  const shown = name.length <= 32 && /^[\x20-\x7e]*$/.test(name) ? ` ${JSON.stringify(name)}` : '';
  return `member name${shown} differs only in letter case (or Unicode folding) from one MCP defines; Go servers read it as that one`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isId(value: unknown): value is string | number {
  return typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
}

/** The id key of a request: a string and a number that print alike are different ids. */
function idKey(id: string | number): string {
  return typeof id === 'number' ? `n${id}` : `s${id}`;
}

const UNRESERVED_ESCAPE = /%(?:[46][1-9a-f]|[57][0-9a]|3[0-9]|2[de]|5f|7e)/i;
const DOT_SEGMENT = /(?:^|[/\\])\.\.?(?:;[^/\\]*)?(?:[/\\]|$)/;

/**
 * Whether a URI's path or query could resolve to another resource than it names: a `.` or `..`
 * segment, written plainly, percent-encoded (any number of times), in a compatibility form
 * (`．`, `‥`, NFKC), with `;` parameters (`..;x`), between `/` or `\`; or a percent-encoded
 * character that needs no encoding (a letter, digit, `-`, `.`, `_`, `~`), which a server
 * decodes before it resolves (RFC 3986 section 6.2.2.2).
 */
export function resolvesElsewhere(uri: string): boolean {
  const hash = uri.indexOf('#');
  let text = hash === -1 ? uri : uri.slice(0, hash);
  if (!/[.%\u2024\u2025\ufe52\uff0e]/.test(text)) return false;
  // %25 is `%`: undone until nothing changes, so %252e is seen as %2e.
  for (let i = 0; i < 8 && text.includes('%25'); i++) text = text.replaceAll('%25', '%');
  if (UNRESERVED_ESCAPE.test(text)) return true;
  if (text.includes('%')) {
    try {
      text = decodeURIComponent(text);
    } catch {
      // Not UTF-8 once decoded: only the separators matter here.
      text = text.replaceAll(/%2f/gi, '/').replaceAll(/%5c/gi, '\\');
    }
  }
  // eslint-disable-next-line no-control-regex -- ASCII is a range of control and printable characters
  if (!/^[\x00-\x7f]*$/.test(text)) text = text.normalize('NFKC');
  return DOT_SEGMENT.test(text);
}

/**
 * What of a message is kept while it is in flight: an initialize's clientInfo as the session
 * keeps it (name and version, cut: sessions.ts), so a megabyte name is not held until the answer
 * comes (nothing reads more of it).
 */
function kept(message: ClientMessage): ClientMessage {
  const info = message.method === 'initialize' ? message.params?.clientInfo : undefined;
  if (!isObject(info)) return message;
  const bounded = (value: unknown, bytes: number) => (typeof value === 'string' ? cutUtf8(value, bytes) : value);
  const clientInfo = { name: bounded(info.name, CLIENT_NAME_BYTES), version: bounded(info.version, CLIENT_VERSION_BYTES) };
  return { ...message, params: { ...message.params, clientInfo } };
}

/** The resource URI a message names for a guard: params.uri of the resource methods, params.ref.uri of completion/complete. */
function resourceUri(message: ClientMessage): string | undefined {
  if (message.resource !== undefined) return message.resource;
  if (message.method !== 'completion/complete') return undefined;
  const ref = message.params?.ref;
  return isObject(ref) && typeof ref.uri === 'string' ? ref.uri : undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * Reads a POST body as JSON-RPC under `protocolVersion` (protocol-version.ts): the messages, a
 * refusal, or unreadable (not JSON, not JSON-RPC). `withArgumentsText` (the audit's): each message
 * also carries its arguments' text as sent.
 */
export function readMessages(body: Buffer, protocolVersion: string, withArgumentsText = false): ReadRequest | Unreadable | Refusal {
  let text: string;
  let value: unknown;
  try {
    text = utf8.decode(body);
    value = JSON.parse(text);
  } catch {
    return { kind: 'unreadable', problem: 'not_json' };
  }
  if (typeof value !== 'object' || value === null) return { kind: 'unreadable', problem: 'not_json_rpc' };
  const batch = Array.isArray(value);
  // Half a surrogate pair can only come from an escape: the text itself is valid UTF-8.
  const { members, problem } = memberProblem(value, batch, text.includes('\\u'));
  if (problem !== undefined) return refusal(problem);
  if (members !== countMemberNames(text))
    return refusal('a member name is written twice in one object, which JSON parsers read differently');
  const elements: unknown[] = batch ? (value as unknown[]) : [value];
  if (elements.length === 0) return { kind: 'unreadable', problem: 'not_json_rpc' };
  if (batch && !allowsBatches(protocolVersion)) {
    return refusal(`JSON-RPC batches are not part of MCP protocol version ${shortVersion(protocolVersion)}: send one message per request`);
  }
  const messages: ClientMessage[] = [];
  const responses: ClientResponse[] = [];
  const ids = batch ? new Set<string>() : undefined;
  let texts: (string | undefined)[] | undefined;
  for (let index = 0; index < elements.length; index++) {
    const element = elements[index];
    if (!isObject(element) || element.jsonrpc !== '2.0') return { kind: 'unreadable', problem: 'not_json_rpc' };
    const { method, id } = element;
    if (typeof method === 'string') {
      if (id !== undefined && !isId(id)) return { kind: 'unreadable', problem: 'not_json_rpc' };
      if (id !== undefined && ids !== undefined) {
        const key = idKey(id);
        if (ids.has(key)) return refusal('two requests of the batch have the same id: their answers could not be told apart');
        ids.add(key);
      }
      const params = element.params;
      // Scanned once a body, and only when some message has an arguments object.
      if (withArgumentsText && texts === undefined && isObject(params) && isObject(params.arguments)) texts = argumentsTexts(text, batch);
      const message = kept(clientMessage(method, id, params, texts?.[index]));
      const uri = resourceUri(message);
      if (uri !== undefined && resolvesElsewhere(uri)) {
        return refusal(
          'resource URI has a dot segment or a needlessly percent-encoded character, which the server would resolve to another resource',
          batch ? null : (id ?? null),
        );
      }
      messages.push(message);
    } else if (isId(id) && ('result' in element || 'error' in element)) {
      const error = isObject(element.error) ? element.error : undefined;
      responses.push({ id, error: error !== undefined, errorCode: typeof error?.code === 'number' ? error.code : undefined });
    } else {
      return { kind: 'unreadable', problem: 'not_json_rpc' };
    }
  }
  return { kind: 'read', messages, responses, batch };
}

/**
 * A tools/call argument that a Go server would bind to another property of the tool's input
 * schema (as the upstream listed it): `SQL` for `sql`. Undefined when none, or when the tool was
 * never listed (nothing is known of its properties then).
 */
export function argumentProblem(message: ClientMessage, schema: ReadonlyMap<string, string> | undefined): Refusal | undefined {
  const args = message.arguments;
  if (schema === undefined || schema.size === 0 || args === undefined) return undefined;
  for (const name in args) {
    const property = schema.get(goFoldKey(name));
    if (property !== undefined && property !== name) {
      return refusal(
        `argument${/^[\x20-\x7e]{1,32}$/.test(name) ? ` ${JSON.stringify(name)}` : ''} differs only in letter case (or Unicode folding) from the tool's input property ${JSON.stringify(property.length <= 64 ? property : `${property.slice(0, 64)}…`)}; Go servers read it as that one`,
        message.id ?? null,
      );
    }
  }
  return undefined;
}

/** A protocol version as the client wrote it, repeated in a message only when short and plain. */
function shortVersion(version: string): string {
  return version.length <= 16 && /^[\w.-]+$/.test(version) ? version : '(as sent)';
}
