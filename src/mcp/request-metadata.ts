// The 2026-07-28 transport mirrors parts of the body into headers (MCP-Protocol-Version, Mcp-Method,
// Mcp-Name, Mcp-Param-{Name}) so that intermediaries can route on them without reading the body.
// Anything that reads the body must prove the two agree (transport, "Server Validation"): the
// sidecar judges the body, and whatever sits in front of or behind it may judge the headers.
// A missing, malformed or mismatched header is refused with 400 and HeaderMismatch (-32020),
// naming the header, before any guard looks at the message.

import type { IncomingHttpHeaders } from 'node:http';
import type { ClientMessage } from './guard.js';
import { RPC_CODES } from '../lib/errors.js';
import type { ParamBinding } from './param-headers.js';

const HEADER_MISMATCH: number = RPC_CODES.headerMismatch;

/** The header a refusal names: the label of mcp_auth_mcp_header_mismatches_total. */
export type MismatchedHeader = 'mcp-protocol-version' | 'mcp-method' | 'mcp-name' | 'mcp-param';
export const MISMATCHED_HEADERS: readonly MismatchedHeader[] = ['mcp-protocol-version', 'mcp-method', 'mcp-name', 'mcp-param'];

export interface HeaderRefusal {
  readonly header: MismatchedHeader;
  readonly rpcCode: number;
  readonly message: string;
}

/** The methods whose Mcp-Name carries `params.name` or `params.uri`. */
const NAMED: Readonly<Record<string, 'name' | 'uri'>> = { 'tools/call': 'name', 'prompts/get': 'name', 'resources/read': 'uri' };

const BASE64_PREFIX = '=?base64?';
const BASE64_SUFFIX = '?=';
// The standard alphabet with its padding, as Go's base64.StdEncoding reads it.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// eslint-disable-next-line no-control-regex -- ASCII is a range of control and printable characters
const ASCII = /^[\x00-\x7f]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 bytes as a string, undefined when they are not UTF-8. */
function fromUtf8(bytes: Buffer): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * A header value as the client meant it: the `=?base64?…?=` form decoded (standard alphabet,
 * padded, UTF-8), any other value as its bytes read as UTF-8 (Node hands header bytes over as
 * Latin-1; the Go SDK sends names unencoded and compares bytes). undefined: not decodable.
 */
export function decodeHeaderValue(value: string): string | undefined {
  if (value.startsWith(BASE64_PREFIX) && value.endsWith(BASE64_SUFFIX) && value.length >= BASE64_PREFIX.length + BASE64_SUFFIX.length) {
    const encoded = value.slice(BASE64_PREFIX.length, value.length - BASE64_SUFFIX.length);
    return BASE64.test(encoded) ? fromUtf8(Buffer.from(encoded, 'base64')) : undefined;
  }
  return ASCII.test(value) ? value : fromUtf8(Buffer.from(value, 'latin1'));
}

/** A value for a message: quoted, at most 64 characters of it. */
function shown(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
}

function single(value: string | string[] | undefined): string | undefined {
  // Node joins repeated headers it does not know with ", ": such a value matches no body value.
  return Array.isArray(value) ? value.join(', ') : value;
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const DECIMAL = /^[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

/** Whether a decoded Mcp-Param value stands for the argument: strings exactly, booleans as true/false, integers as numbers. */
function paramMatches(header: string, value: unknown): boolean {
  if (typeof value === 'string') return header === value;
  if (typeof value === 'boolean') return header === String(value);
  // Integers in JavaScript's safe range only (the spec allows no other numbers); 42 and 42.0 are equal.
  if (typeof value === 'number' && Number.isInteger(value) && Math.abs(value) <= MAX_SAFE) {
    return DECIMAL.test(header) && Number(header) === value;
  }
  return false;
}

/** The argument at a chain of `properties` keys; undefined when absent. */
function argumentAt(args: Readonly<Record<string, unknown>> | undefined, path: readonly string[]): unknown {
  let current: unknown = args;
  for (const key of path) {
    if (typeof current !== 'object' || current === null || Array.isArray(current) || !Object.hasOwn(current, key)) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

function mismatch(header: MismatchedHeader, message: string, rpcCode = HEADER_MISMATCH): HeaderRefusal {
  return { header, rpcCode, message: `Header mismatch: ${message}` };
}

/** The Mcp-Param-* headers of a tools/call against its arguments, where a listing marked them. */
export function checkParamHeaders(
  headers: IncomingHttpHeaders,
  bindings: readonly ParamBinding[],
  args: Readonly<Record<string, unknown>> | undefined,
): HeaderRefusal | undefined {
  for (const binding of bindings) {
    const raw = single(headers[binding.header]);
    const value = argumentAt(args, binding.path);
    const header = `Mcp-Param-${binding.name}`;
    const argument = shown(binding.path.join('.'));
    if (value === undefined || value === null) {
      if (raw !== undefined) return mismatch('mcp-param', `${header} header is present but argument ${argument} is absent or null`);
      continue;
    }
    if (raw === undefined) return mismatch('mcp-param', `${header} header is missing for argument ${argument}`);
    const decoded = decodeHeaderValue(raw);
    if (decoded === undefined) return mismatch('mcp-param', `${header} header value is not valid Base64 UTF-8`);
    if (!paramMatches(decoded, value))
      return mismatch('mcp-param', `${header} header value ${shown(decoded)} does not match argument ${argument}`);
  }
  return undefined;
}

/**
 * The headers of a 2026-07-28 POST against one of its messages. `bindings`: the Mcp-Param marks
 * of the tool a tools/call names, when a listing showed any.
 */
export function checkRequestMetadata(
  headers: IncomingHttpHeaders,
  message: ClientMessage,
  bindings?: readonly ParamBinding[],
): HeaderRefusal | undefined {
  const request = message.id !== undefined;
  const version = single(headers['mcp-protocol-version']);
  const metaVersion = message.meta?.protocolVersion;
  // Required of every request; a notification that names a version is held to it too.
  if (request || metaVersion !== undefined) {
    if (version === undefined) return mismatch('mcp-protocol-version', 'MCP-Protocol-Version header is missing');
    if (metaVersion === undefined) {
      return mismatch(
        'mcp-protocol-version',
        'params._meta["io.modelcontextprotocol/protocolVersion"] is missing: every request of this protocol version carries it',
        RPC_CODES.invalidParams,
      );
    }
    if (version !== metaVersion) {
      return mismatch(
        'mcp-protocol-version',
        `MCP-Protocol-Version header value ${shown(version)} does not match _meta protocol version ${shown(metaVersion)}`,
      );
    }
  }
  const method = single(headers['mcp-method']);
  if (method === undefined) {
    // The revision defines no header rules for notifications: checked when sent.
    if (request) return mismatch('mcp-method', 'Mcp-Method header is missing');
  } else if (decodeRaw(method) !== message.method) {
    return mismatch('mcp-method', `Mcp-Method header value ${shown(method)} does not match body method ${shown(message.method)}`);
  }
  const member = NAMED[message.method];
  if (member !== undefined) {
    const name = single(headers['mcp-name']);
    const body = message.params?.[member];
    if (name === undefined) return mismatch('mcp-name', `Mcp-Name header is missing (${message.method} names params.${member})`);
    if (typeof body !== 'string') return mismatch('mcp-name', `params.${member} of ${message.method} must be a string`);
    const decoded = decodeHeaderValue(name);
    if (decoded === undefined) return mismatch('mcp-name', 'Mcp-Name header value is not valid Base64 UTF-8');
    if (decoded !== body)
      return mismatch('mcp-name', `Mcp-Name header value ${shown(decoded)} does not match params.${member} ${shown(body)}`);
  }
  if (message.method === 'tools/call' && bindings !== undefined) return checkParamHeaders(headers, bindings, message.arguments);
  return undefined;
}

/** A plain header value (no Base64 form) as UTF-8; a value that is not UTF-8 matches nothing. */
function decodeRaw(value: string): string | undefined {
  return ASCII.test(value) ? value : fromUtf8(Buffer.from(value, 'latin1'));
}
