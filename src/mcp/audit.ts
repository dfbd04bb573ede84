// The audit line: one `"msg":"mcp"` JSON line per MCP request or notification, written like the
// request line (observability/log.ts): one template into the logger's destination, fields left out when
// undefined. Argument values appear only with AUDIT_ARGUMENTS=values, each cut to
// AUDIT_ARGUMENT_BYTES; otherwise their names and a SHA-256 of the arguments as sent: the
// characters of the body (arguments-text.ts), not a re-serialisation.

import { hash } from 'node:crypto';
import type { Logger } from 'pino';
import { createInfoLine } from '../observability/log.js';
import type { Config } from '../config/config.js';
import { cutUtf8 } from '../lib/utf8.js';

export { cutUtf8 } from '../lib/utf8.js';

export type Outcome =
  | 'result'
  | 'tool_error'
  | 'rpc_error'
  | 'denied'
  | 'limited'
  | 'upstream_error'
  | 'cancelled'
  | 'unknown'
  | 'header_mismatch'
  | 'input_required'
  | 'subscribed'
  | 'invalid_request'
  | 'forbidden_session';
/**
 * Every outcome, as the audit line and mcp_auth_mcp_messages_total write it: `header_mismatch`, a
 * 2026-07-28 request whose headers disagree with its body (refused, nothing forwarded);
 * `input_required`, a multi round-trip result asking the client for input (the retry is a
 * message of its own); `subscribed`, a subscriptions/listen stream that has opened (its line at
 * the end has the outcome of the stream); `invalid_request`, a request the one reading refused
 * (read-request.ts: nothing forwarded); `forbidden_session`, a request naming a session another
 * subject started (refused, nothing forwarded).
 */
export const OUTCOMES: readonly Outcome[] = [
  'result',
  'tool_error',
  'rpc_error',
  'denied',
  'limited',
  'upstream_error',
  'cancelled',
  'unknown',
  'header_mismatch',
  'input_required',
  'subscribed',
  'invalid_request',
  'forbidden_session',
];

export interface AuditLine {
  /** The sidecar's own request id (X-Request-Id of the response and of the upstream request). */
  reqId: string;
  /** The X-Request-Id the client sent, if any: its own correlation, never taken for reqId. */
  clientRequestId?: string | undefined;
  user: string | undefined;
  subject: string | undefined;
  /** How the token was held: `dpop` (bound to the key of a proof checked on the request) or `bearer`. */
  binding: 'bearer' | 'dpop';
  /** The issuer that vouched for the caller's token (several may be trusted). */
  issuer?: string | undefined;
  sessionId: string | undefined;
  client: string | undefined;
  protocolVersion: string | undefined;
  method: string;
  tool: string | undefined;
  prompt: string | undefined;
  resource: string | undefined;
  arguments: Readonly<Record<string, unknown>> | undefined;
  /** The arguments as written in the request body; hashed instead of re-serialising `arguments`. */
  argumentsText?: string | undefined;
  rpcId: string | number | undefined;
  /** The trace of the message's span when tracing recorded one, else of its `_meta` `traceparent`. */
  traceId?: string | undefined;
  /** The message's span, when tracing recorded one. */
  spanId?: string | undefined;
  /** A retry of a multi round-trip request (it carries `inputResponses`). */
  inputResponses?: boolean | undefined;
  /** Outcome input_required: the methods of the input requested (elicitation/create, sampling/createMessage, roots/list). */
  inputRequests?: readonly string[] | undefined;
  /** The end of a subscriptions/listen stream: the notifications it carried. */
  notifications?: number | undefined;
  outcome: Outcome;
  rpcErrorCode: number | undefined;
  policyRule: string | undefined;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
}

// Names are the client's choice: a bounded count of bounded length.
const MAX_ARGUMENT_NAMES = 64;
const MAX_NAME_LENGTH = 128;
/** Bytes kept of each string the client chose (README: MCP audit, Bounds): longer ones are cut and end in `…`. */
export const AUDIT_BOUNDS = {
  method: 128,
  name: 256,
  resource: 1024,
  rpcId: 128,
  clientRequestId: 128,
  client: 256,
  sessionId: 256,
} as const;
/** Nesting kept of an argument value with AUDIT_ARGUMENTS=values: deeper is cut like a long value. */
export const MAX_VALUE_DEPTH = 16;

// Ids, user names, tool names and versions are nearly always characters JSON writes as they
// are: those are quoted directly, a third of JSON.stringify's time on a short string (most of an
// audit line's cost without arguments); anything else goes through JSON.stringify.
const PLAIN = /^[\w\-./:@+ ]*$/;
const MAX_PLAIN_LENGTH = 256;
function quote(value: string): string {
  return value.length <= MAX_PLAIN_LENGTH && PLAIN.test(value) ? `"${value}"` : JSON.stringify(value);
}

/** A client's string, cut to `bytes`, quoted. */
function quoteCut(value: string, bytes: number): string {
  return quote(value.length * 3 <= bytes ? value : cutUtf8(value, bytes));
}

function cutName(name: string): string {
  return name.length > MAX_NAME_LENGTH ? `${name.slice(0, MAX_NAME_LENGTH)}…` : name;
}

/** The argument names as a JSON array. */
function argumentNames(args: Readonly<Record<string, unknown>>): string {
  let json = '';
  let count = 0;
  for (const name in args) {
    if (count++ === MAX_ARGUMENT_NAMES) break;
    json += `${json === '' ? '' : ','}${quote(cutName(name))}`;
  }
  return `[${json}]`;
}

/**
 * The JSON text of a parsed value, written only until it is longer than `limit` characters or
 * nested deeper than MAX_VALUE_DEPTH (`complete` is false then): JSON.stringify would walk all of
 * it, and overflows the stack on a deeply nested one (JSON.parse does not).
 */
export function boundedJson(value: unknown, limit: number): { text: string; complete: boolean } {
  let text = '';
  let complete = true;
  const string = (s: string) => {
    if (s.length > limit) complete = false;
    text += JSON.stringify(s.length > limit ? s.slice(0, limit + 1) : s);
  };
  const write = (v: unknown, depth: number): void => {
    if (typeof v === 'string') return string(v);
    if (typeof v !== 'object' || v === null) {
      text += JSON.stringify(v) ?? 'null';
      return;
    }
    if (depth === MAX_VALUE_DEPTH) {
      complete = false;
      return;
    }
    if (Array.isArray(v)) {
      text += '[';
      for (let i = 0; i < v.length && complete && text.length <= limit; i++) {
        if (i > 0) text += ',';
        write(v[i], depth + 1);
      }
    } else {
      text += '{';
      let first = true;
      for (const name in v) {
        if (!complete || text.length > limit) break;
        if (!first) text += ',';
        first = false;
        string(name);
        text += ':';
        write((v as Record<string, unknown>)[name], depth + 1);
      }
    }
    if (text.length > limit) complete = false;
    if (complete) text += Array.isArray(v) ? ']' : '}';
  };
  write(value, 0);
  return { text, complete: complete && text.length <= limit };
}

/** Each value as JSON when it fits in `bytes`, else its JSON text cut to `bytes` (a string ending in `…`). */
function argumentValues(args: Readonly<Record<string, unknown>>, bytes: number): string {
  let json = '';
  let count = 0;
  for (const name in args) {
    if (count++ === MAX_ARGUMENT_NAMES) break;
    const { text, complete } = boundedJson(args[name], bytes);
    const value = complete && Buffer.byteLength(text) <= bytes ? text : JSON.stringify(cutUtf8(text, bytes).replace(/(?<!…)$/, '…'));
    json += `${json === '' ? '' : ','}${quote(cutName(name))}:${value}`;
  }
  return `{${json}}`;
}

export type AuditWriter = (line: AuditLine) => void;

/**
 * The audit writer, or undefined with AUDIT=off. It never throws: a line it cannot write whole
 * (a bug, a value it cannot serialise) is written without its arguments, marked
 * `"auditError":true`, and `onFailure` counts it (mcp_auth_audit_failures_total).
 */
export function createAuditWriter(
  logger: Logger,
  config: Pick<Config, 'audit' | 'auditArguments' | 'auditArgumentBytes'>,
  onFailure: () => void = () => {},
): AuditWriter | undefined {
  if (!config.audit) return undefined;
  const info = createInfoLine(logger, 'mcp');
  const text = JSON.stringify;
  const values = config.auditArguments === 'values';
  const valueBytes = config.auditArgumentBytes;
  const B = AUDIT_BOUNDS;

  function lineText(line: AuditLine, withArguments: boolean): string {
    let json = `${info.start()},"reqId":${quote(line.reqId)}`;
    if (line.clientRequestId !== undefined) json += `,"clientRequestId":${quoteCut(line.clientRequestId, B.clientRequestId)}`;
    if (line.user !== undefined) json += `,"user":${quote(line.user)}`;
    if (line.subject !== undefined) json += `,"subject":${quote(line.subject)}`;
    json += `,"binding":"${line.binding}"`;
    if (line.issuer !== undefined) json += `,"issuer":${quoteCut(line.issuer, B.resource)}`;
    if (line.sessionId !== undefined) json += `,"sessionId":${quoteCut(line.sessionId, B.sessionId)}`;
    if (line.client !== undefined) json += `,"client":${quoteCut(line.client, B.client)}`;
    if (line.protocolVersion !== undefined) json += `,"protocolVersion":${quoteCut(line.protocolVersion, B.method)}`;
    json += `,"method":${quoteCut(line.method, B.method)}`;
    if (line.tool !== undefined) json += `,"tool":${quoteCut(line.tool, B.name)}`;
    if (line.prompt !== undefined) json += `,"prompt":${quoteCut(line.prompt, B.name)}`;
    if (line.resource !== undefined) json += `,"resource":${quoteCut(line.resource, B.resource)}`;
    const args = line.arguments;
    if (args !== undefined && withArguments) {
      json += `,"argumentNames":${argumentNames(args)},"argumentsSha256":"${hash('sha256', line.argumentsText ?? text(args))}"`;
      if (values) json += `,"arguments":${argumentValues(args, valueBytes)}`;
    }
    if (line.rpcId !== undefined) json += `,"rpcId":${typeof line.rpcId === 'string' ? quoteCut(line.rpcId, B.rpcId) : text(line.rpcId)}`;
    if (line.traceId !== undefined) json += `,"traceId":"${line.traceId}"`;
    if (line.spanId !== undefined) json += `,"spanId":"${line.spanId}"`;
    if (line.inputResponses === true) json += ',"inputResponses":true';
    json += `,"outcome":"${line.outcome}"`;
    if (line.inputRequests !== undefined)
      json += `,"inputRequests":[${line.inputRequests.map((kind) => quoteCut(kind, B.method)).join(',')}]`;
    if (line.notifications !== undefined) json += `,"notifications":${line.notifications}`;
    if (line.rpcErrorCode !== undefined) json += `,"rpcErrorCode":${line.rpcErrorCode}`;
    if (line.policyRule !== undefined) json += `,"policyRule":${quote(line.policyRule)}`;
    if (!withArguments) json += ',"auditError":true';
    return `${json},"durationMs":${line.durationMs},"bytesIn":${line.bytesIn},"bytesOut":${line.bytesOut}`;
  }

  return function writeAudit(line: AuditLine): void {
    try {
      if (!logger.isLevelEnabled('info')) return;
      info.end(lineText(line, true));
    } catch {
      try {
        onFailure();
        info.end(lineText(line, false));
      } catch {
        // Even the plain line failed (the destination itself): counted above, nothing more to do.
      }
    }
  };
}
