// One bounded HTTP request whose answer is JSON, through an undici dispatcher: one deadline for
// the whole exchange (connecting included), a cap on the body, no redirects. For the calls the
// sidecar makes to its identity provider (discovery, token exchange).

import type { Dispatcher } from 'undici';

export interface JsonRequest {
  method: 'GET' | 'POST';
  url: string;
  headers?: Record<string, string>;
  body?: string;
  timeoutMs: number;
  maxBytes: number;
}

export interface JsonAnswer {
  status: number;
  /** The parsed body; undefined when it is not JSON. */
  json: unknown;
}

export function requestJson(dispatcher: Dispatcher, request: JsonRequest): Promise<JsonAnswer> {
  const { origin, pathname, search } = new URL(request.url);
  const what = `${request.method} ${origin}${pathname}`;
  return new Promise((resolve, reject) => {
    let controller: Dispatcher.DispatchController | undefined;
    let settled = false;
    let status = 0;
    let size = 0;
    const chunks: Buffer[] = [];
    const settle = (error: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      if (error !== undefined) return reject(error);
      let json: unknown;
      try {
        json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        json = undefined;
      }
      resolve({ status, json });
    };
    const tooLong = new Error(`${what} took longer than ${request.timeoutMs} ms`);
    const deadline = setTimeout(() => {
      settle(tooLong);
      controller?.abort(tooLong);
    }, request.timeoutMs);
    dispatcher.dispatch(
      {
        origin,
        path: `${pathname}${search}`,
        method: request.method,
        headers: { accept: 'application/json', ...request.headers },
        body: request.body ?? null,
      },
      {
        onRequestStart: (started) => {
          controller = started;
          if (settled) started.abort(tooLong);
        },
        onResponseStart: (_controller, statusCode) => {
          status = statusCode;
        },
        onResponseData: (active, chunk) => {
          size += chunk.length;
          if (size > request.maxBytes) active.abort(new Error(`${what}: body exceeds ${request.maxBytes} bytes`));
          else chunks.push(chunk);
        },
        onResponseEnd: () => settle(undefined),
        onResponseError: (_controller, error) => settle(error),
      },
    );
  });
}
