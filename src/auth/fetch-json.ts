// A bounded JSON request to an issuer (discovery, key set, introspection): one deadline for the
// whole exchange, connecting included; a size cap; no redirects; 200 or an error.

import type { Dispatcher } from 'undici';
import type { Agent } from '../lib/undici.js';

export interface JsonRequest {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  timeoutMs: number;
  maxBytes: number;
}

export function requestJson(agent: InstanceType<typeof Agent>, url: string, request: JsonRequest): Promise<unknown> {
  const { method = 'GET', timeoutMs, maxBytes } = request;
  const { origin, pathname, search } = new URL(url);
  return new Promise((resolve, reject) => {
    let controller: Dispatcher.DispatchController | undefined;
    let settled = false;
    let statusCode = 0;
    let size = 0;
    const chunks: Buffer[] = [];
    const settle = (error: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      if (error !== undefined) return reject(error);
      if (statusCode !== 200) return reject(new Error(`${method} ${url} answered ${statusCode}`));
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (parseError) {
        reject(parseError as Error);
      }
    };
    // A request not yet started when the deadline passes is aborted as soon as it starts.
    const tooLong = new Error(`${method} ${url} took longer than ${timeoutMs} ms`);
    const deadline = setTimeout(() => {
      settle(tooLong);
      controller?.abort(tooLong);
    }, timeoutMs);
    agent.dispatch(
      {
        origin,
        path: `${pathname}${search}`,
        method,
        headers: { accept: 'application/json', ...request.headers },
        ...(request.body === undefined ? {} : { body: request.body }),
      },
      {
        onRequestStart: (started) => {
          controller = started;
          if (settled) started.abort(tooLong);
        },
        onResponseStart: (_controller, status) => {
          statusCode = status;
        },
        onResponseData: (active, chunk) => {
          size += chunk.length;
          if (size > maxBytes) active.abort(new Error(`${method} ${url} body exceeds ${maxBytes} bytes`));
          else chunks.push(chunk);
        },
        onResponseEnd: () => settle(undefined),
        onResponseError: (_controller, error) => settle(error),
      },
    );
  });
}
