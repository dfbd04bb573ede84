// Every JSON error body the sidecar writes itself goes through here: one shape
// ({"error", "reason"?, "error_description"}), codes from the tables in lib/errors.ts,
// `cache-control: no-store`, and the request id on every answer. An answer that never changes is
// rendered once (status line text, headers, body) and written per request with only its request
// id added: hostile traffic is mostly such answers.

import type { ServerResponse } from 'node:http';
import { STATUS_CODES } from './status-codes.js';

export interface ErrorBody {
  /** The code clients switch on: OAuth 2.0's where it has one (RFC 6749 section 5.2, RFC 6750 section 3.1). */
  readonly error: string;
  /** The metric label of a rejection or refusal, where the answer has one. */
  readonly reason?: string;
  /** What is wrong, never quoting the request. */
  readonly error_description: string;
}

/** What an answer says about its connection (http/connections.ts): `connection: close`, or a `keep-alive` time. */
export type ConnectionHeader = readonly [name: string, value: string];
export const CLOSE: ConnectionHeader = ['connection', 'close'];

/** An error answer rendered once, written as often as needed. */
export class ErrorResponse {
  readonly body: string;
  private readonly fixed: string[];
  /** Name, value... as writeHead takes them; the last value is the request id, set per write. */
  private readonly headers: string[];
  /** The same with a connection header before the request id, one array per header. */
  private readonly withConnection = new WeakMap<ConnectionHeader, string[]>();

  constructor(
    readonly status: number,
    body: ErrorBody,
    /** A list of values is sent as that many fields of the name (two WWW-Authenticate challenges). */
    headers: Readonly<Record<string, string | readonly string[]>> = {},
  ) {
    this.body = JSON.stringify(body);
    this.fixed = [
      'content-type',
      'application/json; charset=utf-8',
      'content-length',
      String(Buffer.byteLength(this.body)),
      'cache-control',
      'no-store',
      ...Object.entries(headers).flatMap(([name, value]) => (typeof value === 'string' ? [name, value] : value.flatMap((v) => [name, v]))),
    ];
    this.headers = [...this.fixed, 'x-request-id', ''];
  }

  /**
   * Answers a request with it, saying `connection` about its connection when given, and `extra`
   * (name, value...) for what changes from write to write (a DPoP nonce).
   */
  write(res: ServerResponse, requestId: string, connection?: ConnectionHeader, extra?: readonly string[]): void {
    if (res.headersSent) {
      // Another answer has begun: all the client can be told is that it is cut short.
      res.destroy();
      return;
    }
    // Node's writeHead renders the array into the header block at once and keeps no reference
    // to it, so one array serves every write: no copy per request.
    const headers = connection === undefined ? this.headers : this.headersWith(connection);
    headers[headers.length - 1] = requestId;
    res.writeHead(this.status, extra === undefined ? headers : [...headers, ...extra]);
    res.end(this.body);
  }

  private headersWith(connection: ConnectionHeader): string[] {
    let headers = this.withConnection.get(connection);
    if (headers === undefined) {
      headers = [...this.fixed, ...connection, 'x-request-id', ''];
      this.withConnection.set(connection, headers);
    }
    return headers;
  }

  /** The whole answer as HTTP/1.1 text, for a socket no response object owns (Node's parser refused what came); it closes the connection. */
  text(requestId: string): string {
    const headers = [...this.fixed, ...CLOSE, 'x-request-id', requestId];
    let head = `HTTP/1.1 ${this.status} ${STATUS_CODES[this.status] ?? 'unknown'}\r\n`;
    for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
    return `${head}\r\n${this.body}`;
  }
}

/** Answers with an error whose description depends on the request or the configuration: rendered for this one write. */
export function writeError(
  res: ServerResponse,
  requestId: string,
  status: number,
  body: ErrorBody,
  options: { headers?: Readonly<Record<string, string>>; connection?: ConnectionHeader } = {},
): void {
  new ErrorResponse(status, body, options.headers).write(res, requestId, options.connection);
}

/** An entry of one of lib/errors.ts's tables as a prepared answer; `reason` names it in the body. */
export function prepare(
  entry: { readonly status: number; readonly error: string; readonly description: string },
  reason?: string,
  headers?: Readonly<Record<string, string>>,
): ErrorResponse {
  const body: ErrorBody =
    reason === undefined
      ? { error: entry.error, error_description: entry.description }
      : { error: entry.error, reason, error_description: entry.description };
  return new ErrorResponse(entry.status, body, headers);
}
