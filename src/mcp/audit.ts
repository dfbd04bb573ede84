// The audit line: one `"msg":"mcp"` JSON line per MCP request or notification, written like the
// request line (observability/log.ts): one template into the logger's destination, fields left out when
// undefined. Argument values appear only with AUDIT_ARGUMENTS=values, each cut to
// AUDIT_ARGUMENT_BYTES; otherwise their names and a SHA-256 of the arguments as sent: the
// characters of the body (arguments-text.ts), not a re-serialisation.

import { hash } from 'node:crypto';
import type { Logger } from 'pino';
import { createInfoLine } from '../observability/log.js';
import type { Config } from '../config/config.js';

export type Outcome = 'result' | 'tool_error' | 'rpc_error' | 'denied' | 'limited' | 'upstream_error' | 'cancelled' | 'unknown';
export const OUTCOMES: readonly Outcome[] = [
  'result',
  'tool_error',
  'rpc_error',
  'denied',
  'limited',
  'upstream_error',
  'cancelled',
  'unknown',
];

export interface AuditLine {
  reqId: string;
  user: string | undefined;
  subject: string | undefined;
  /** How the token was held: `dpop` (bound to the key of a proof checked on the request) or `bearer`. */
  binding: 'bearer' | 'dpop';
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

/** A string of at most `bytes` UTF-8 bytes, cut at a character boundary, `…` marking a cut. */
export function cutUtf8(text: string, bytes: number): string {
  if (text.length * 3 <= bytes || Buffer.byteLength(text) <= bytes) return text;
  const buffer = Buffer.from(text);
  let end = bytes;
  // Back off continuation bytes (10xxxxxx) so no character is split.
  while (end > 0 && (buffer[end]! & 0xc0) === 0x80) end--;
  return `${buffer.toString('utf8', 0, end)}…`;
}

// Ids, user names, tool names and versions are nearly always characters JSON writes as they
// are: those are quoted directly, a third of JSON.stringify's time on a short string (most of an
// audit line's cost without arguments); anything else goes through JSON.stringify.
const PLAIN = /^[\w\-./:@+ ]*$/;
const MAX_PLAIN_LENGTH = 256;
function quote(value: string): string {
  return value.length <= MAX_PLAIN_LENGTH && PLAIN.test(value) ? `"${value}"` : JSON.stringify(value);
}

/** The argument names as a JSON array. */
function argumentNames(args: Readonly<Record<string, unknown>>): string {
  let json = '';
  let count = 0;
  for (const name in args) {
    if (count++ === MAX_ARGUMENT_NAMES) break;
    json += `${json === '' ? '' : ','}${quote(name.length > MAX_NAME_LENGTH ? `${name.slice(0, MAX_NAME_LENGTH)}…` : name)}`;
  }
  return `[${json}]`;
}

/** Each value as JSON when it fits in `bytes`, else its JSON text cut to `bytes`. */
function argumentValues(args: Readonly<Record<string, unknown>>, bytes: number): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  let count = 0;
  for (const name in args) {
    if (count++ === MAX_ARGUMENT_NAMES) break;
    const json = JSON.stringify(args[name]) ?? 'null';
    values[name.length > MAX_NAME_LENGTH ? `${name.slice(0, MAX_NAME_LENGTH)}…` : name] =
      Buffer.byteLength(json) <= bytes ? args[name] : cutUtf8(json, bytes);
  }
  return values;
}

export type AuditWriter = (line: AuditLine) => void;

export function createAuditWriter(
  logger: Logger,
  config: Pick<Config, 'audit' | 'auditArguments' | 'auditArgumentBytes'>,
): AuditWriter | undefined {
  if (!config.audit) return undefined;
  const info = createInfoLine(logger, 'mcp');
  const text = JSON.stringify;
  const values = config.auditArguments === 'values';
  const valueBytes = config.auditArgumentBytes;
  return function writeAudit(line: AuditLine): void {
    if (!logger.isLevelEnabled('info')) return;
    let json = `${info.start()},"reqId":${quote(line.reqId)}`;
    if (line.user !== undefined) json += `,"user":${quote(line.user)}`;
    if (line.subject !== undefined) json += `,"subject":${quote(line.subject)}`;
    json += `,"binding":"${line.binding}"`;
    if (line.sessionId !== undefined) json += `,"sessionId":${quote(line.sessionId)}`;
    if (line.client !== undefined) json += `,"client":${quote(line.client)}`;
    if (line.protocolVersion !== undefined) json += `,"protocolVersion":${quote(line.protocolVersion)}`;
    json += `,"method":${quote(line.method)}`;
    if (line.tool !== undefined) json += `,"tool":${quote(line.tool)}`;
    if (line.prompt !== undefined) json += `,"prompt":${quote(line.prompt)}`;
    if (line.resource !== undefined) json += `,"resource":${quote(line.resource)}`;
    const args = line.arguments;
    if (args !== undefined) {
      json += `,"argumentNames":${argumentNames(args)},"argumentsSha256":"${hash('sha256', line.argumentsText ?? text(args))}"`;
      if (values) json += `,"arguments":${text(argumentValues(args, valueBytes))}`;
    }
    if (line.rpcId !== undefined) json += `,"rpcId":${typeof line.rpcId === 'string' ? quote(line.rpcId) : text(line.rpcId)}`;
    json += `,"outcome":"${line.outcome}"`;
    if (line.rpcErrorCode !== undefined) json += `,"rpcErrorCode":${line.rpcErrorCode}`;
    if (line.policyRule !== undefined) json += `,"policyRule":${quote(line.policyRule)}`;
    info.end(`${json},"durationMs":${line.durationMs},"bytesIn":${line.bytesIn},"bytesOut":${line.bytesOut}`);
  };
}
