// The request hook that decides accept or reject for every non-public request on the proxy port.

import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { Rejection } from '../lib/errors.js';
import type { Metrics } from '../observability/metrics.js';
import type { ConnectionGuard } from '../http/connections.js';
import type { Identity, Verdict } from './verify.js';

/** Verification as this hook calls it; the request is for a tracing wrapper (tracing/tracing.ts). */
export type RequestVerify = (token: string, request: FastifyRequest) => Verdict | Promise<Verdict>;

export interface AuthState {
  decision: 'accept' | 'reject' | 'public';
  reason: string | undefined;
  identity: Identity | undefined;
}

/**
 * The bearer token of a request, read from the raw headers (Node keeps only the first
 * Authorization), or why there is none. Returned, not thrown: requests without a token are the
 * commonest rejection, and a throw costs more than the rest of this function.
 */
export function extractBearerToken(rawHeaders: readonly string[]): string | Rejection {
  let value: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.length === 13 && rawHeaders[i]!.toLowerCase() === 'authorization') {
      if (value !== undefined) return new Rejection('malformed_token', 'several Authorization headers');
      value = rawHeaders[i + 1]!;
    }
  }
  if (value === undefined) return new Rejection('missing_token');
  // The scheme found by a scan that stops at the first blank, not a regular expression over the ~1 KB value.
  const header = value.trim();
  let schemeEnd = 0;
  while (schemeEnd < header.length && !isSpaceOrTab(header.charCodeAt(schemeEnd))) schemeEnd++;
  if (header.slice(0, schemeEnd).toLowerCase() !== 'bearer') {
    return new Rejection('missing_token', 'Authorization header does not use the Bearer scheme');
  }
  const token = header.slice(schemeEnd).trim();
  if (token === '') return new Rejection('malformed_token', 'Bearer token is empty');
  // Not scanned for white space here (1.5 µs a request): verification accepts base64url and
  // dots only, and says so when a token holds anything else.
  return token;
}

function isSpaceOrTab(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

function quote(value: string): string {
  return `"${value.replace(/["\\]/g, '')}"`;
}

export interface RejectionResponse {
  status: number;
  /** Name, value, name, value... as Node's writeHead takes them; the request id comes last. */
  headers: string[];
  body: string;
}

/** The whole answer to a rejection (also the answer of bench:floor's measuring stick of the work every rejection owes). */
export function renderRejection(rejection: Rejection, resourceMetadataUrl: string, scopes: readonly string[] = []): RejectionResponse {
  let challenge = `Bearer resource_metadata=${quote(resourceMetadataUrl)}`;
  // The scopes a client should ask for (RESOURCE_SCOPES), as the MCP authorization spec asks of a 401.
  if (rejection.status === 401 && scopes.length > 0) challenge += `, scope=${quote(scopes.join(' '))}`;
  const error = rejection.challengeError;
  if (error !== undefined) challenge += `, error=${quote(error)}, error_description=${quote(rejection.message)}`;
  const body = JSON.stringify({ error: rejection.code, reason: rejection.reason, error_description: rejection.message });
  const headers = [
    'content-type',
    'application/json; charset=utf-8',
    'content-length',
    String(Buffer.byteLength(body)),
    'www-authenticate',
    challenge,
    'cache-control',
    'no-store',
  ];
  if (rejection.status === 503) headers.push('retry-after', '5');
  return { status: rejection.status, headers, body };
}

/**
 * Answers rejections. Reason and message decide the whole answer, and messages come from a fixed
 * set (the code's, and some naming a configured claim; never token data), so each answer is built
 * once and written straight to the response: hostile traffic is mostly rejections, and Fastify's
 * reply pipeline (headers merged, payload typed, onSend hooks; none used here) was a tenth of one.
 */
function createRejectionSender(resourceMetadataUrl: string, connections: ConnectionGuard | undefined, scopes: readonly string[]) {
  const rendered = new Map<string, RejectionResponse>();
  return function sendRejection(request: FastifyRequest, reply: FastifyReply, rejection: Rejection): void {
    const id = `${rejection.reason}:${rejection.message}`;
    let response = rendered.get(id);
    if (response === undefined) {
      response = renderRejection(rejection, resourceMetadataUrl, scopes);
      rendered.set(id, response);
    }
    reply.hijack();
    // A connection that never carried an accepted request is not kept after a rejection: a
    // client without a valid token cannot hold connections (http/connections.ts).
    if (connections !== undefined && !connections.isAuthenticated(request.raw.socket)) {
      reply.raw.writeHead(response.status, [...response.headers, 'x-request-id', request.id, 'connection', 'close']);
    } else {
      reply.raw.writeHead(response.status, [...response.headers, 'x-request-id', request.id]);
    }
    reply.raw.end(response.body);
  };
}

export function createAuthenticateHook(
  verify: RequestVerify,
  metrics: Metrics,
  resourceMetadataUrl: string,
  connections?: ConnectionGuard,
  scopes: readonly string[] = [],
) {
  const sendRejection = createRejectionSender(resourceMetadataUrl, connections, scopes);
  function reject(request: FastifyRequest, reply: FastifyReply, error: unknown): void {
    // Anything that is not a Rejection is a bug in verification: fail closed, and say so in the log.
    const rejection = error instanceof Rejection ? error : new Rejection('malformed_token');
    // Only the error's type: a message could quote the input, and the input is a token.
    if (!(error instanceof Rejection))
      request.log.error({ errorType: (error as Error | undefined)?.name }, 'verification failed unexpectedly');
    request.auth.decision = 'reject';
    request.auth.reason = rejection.reason;
    metrics.rejected.inc({ reason: rejection.reason });
    sendRejection(request, reply, rejection);
  }

  function accept(request: FastifyRequest, identity: Identity): void {
    request.auth.decision = 'accept';
    request.auth.identity = identity;
    metrics.accepted.inc();
    connections?.authenticated(request.raw.socket);
  }

  return function authenticate(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (request.routeOptions.config.public === true) {
      request.auth.decision = 'public';
      // Not kept either when nothing on it was accepted: else Node's keep-alive time would
      // replace the shorter idle time of an unauthenticated connection (http/connections.ts).
      if (connections !== undefined && !connections.isAuthenticated(request.raw.socket)) reply.raw.shouldKeepAlive = false;
      done();
      return;
    }
    const token = extractBearerToken(request.raw.rawHeaders);
    if (token instanceof Rejection) {
      reject(request, reply, token);
      return;
    }
    // Only verifications are timed: a request without a usable token would drag the quantiles down.
    // With tracing, the histogram's exemplar points at this request's trace.
    const stopTimer = metrics.verifyDuration.startTimer(undefined, request.trace?.exemplar);
    let result;
    try {
      result = verify(token, request);
    } catch (error) {
      stopTimer();
      reject(request, reply, error);
      return;
    }
    if (!(result instanceof Promise)) {
      stopTimer();
      accept(request, result.identity);
      done();
      return;
    }
    result.then(
      (verdict) => {
        stopTimer();
        accept(request, verdict.identity);
        done();
      },
      (error: unknown) => {
        stopTimer();
        reject(request, reply, error);
      },
    );
  };
}
