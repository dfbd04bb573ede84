// A bounded JSON request to an issuer (discovery, key set, introspection, token exchange): one
// deadline for the whole exchange, connecting included; a size cap; no redirects. And the one
// reading of an issuer's discovery document.
// `requestJson`: 200 and JSON, or an error; `requestAnswer`: any status with its JSON, for the
// token endpoint, whose refusals carry an OAuth error worth reading.

import type { Dispatcher } from 'undici';
import type { Agent } from '../lib/undici.js';

/** A client's credentials in HTTP Basic, each form-encoded first as RFC 6749 section 2.3.1 says. */
export function clientBasic(clientId: string, secret: string): string {
  const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(secret)}`).toString('base64')}`;
}

export interface JsonRequest {
  method?: 'GET' | 'POST';
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

export function requestJson(agent: InstanceType<typeof Agent>, url: string, request: JsonRequest): Promise<unknown> {
  const method = request.method ?? 'GET';
  return requestAnswer(agent, url, request).then(({ status, json }) => {
    if (status !== 200) throw new Error(`${method} ${url} answered ${status}`);
    if (json === undefined) throw new Error(`${method} ${url} answered with a body that is not JSON`);
    return json;
  });
}

/**
 * One endpoint of `issuer` (`jwks_uri`, `introspection_endpoint`, `token_endpoint`) from its
 * OIDC discovery document, which must name the issuer itself; an http(s) URL, else an error.
 */
export async function discoverEndpoint(
  agent: InstanceType<typeof Agent>,
  issuer: string,
  field: string,
  limits: Pick<JsonRequest, 'timeoutMs' | 'maxBytes'>,
): Promise<string> {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  const document = (await requestJson(agent, url, limits)) as Record<string, unknown> | null;
  if (document?.issuer !== issuer) {
    throw new Error(`discovery document names issuer ${JSON.stringify(document?.issuer)}, expected ${JSON.stringify(issuer)}`);
  }
  const endpoint = document[field];
  if (typeof endpoint !== 'string' || !/^https?:\/\//.test(endpoint)) throw new Error(`discovery document has no http(s) ${field}`);
  return endpoint;
}

export function requestAnswer(agent: InstanceType<typeof Agent>, url: string, request: JsonRequest): Promise<JsonAnswer> {
  const { method = 'GET', timeoutMs, maxBytes } = request;
  const { origin, pathname, search } = new URL(url);
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
        onResponseStart: (_controller, statusCode) => {
          status = statusCode;
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
