// The path of a request target, without its query string: what log lines and path checks read
// (a query may carry anything a client chooses, tokens included); and the client's own request id.

import { cutUtf8 } from './utf8.js';

/** Bytes of the client's X-Request-Id kept in log lines (its own correlation id, never taken for ours). */
export const CLIENT_REQUEST_ID_BYTES = 128;

/** The client's X-Request-Id as log lines carry it (`clientRequestId`): cut to CLIENT_REQUEST_ID_BYTES. */
export function clientRequestId(headers: Record<string, string | string[] | undefined>): string | undefined {
  const inbound = headers['x-request-id'];
  if (typeof inbound !== 'string') return undefined;
  return inbound.length * 3 <= CLIENT_REQUEST_ID_BYTES ? inbound : cutUtf8(inbound, CLIENT_REQUEST_ID_BYTES);
}

export function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}
