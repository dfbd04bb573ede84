// The request hook that decides accept or reject for every non-public request on the proxy port.

import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { REJECTION_REASONS, Rejection, type RejectionReason } from '../lib/errors.js';
import { ErrorResponse } from '../lib/error-response.js';
import type { Metrics } from '../observability/metrics.js';
import type { ConnectionGuard } from '../http/connections.js';
import type { Identity, Verdict } from './verify.js';

/**
 * Verification as this hook calls it: the verdict cache's, which returns rejections rather than
 * throwing them (auth/verdict-cache.ts); the request is for a tracing wrapper (tracing/tracing.ts).
 */
export type RequestVerify = (token: string, request: FastifyRequest) => Verdict | Rejection | Promise<Verdict | Rejection>;

export interface AuthState {
  decision: 'accept' | 'reject' | 'public';
  reason: string | undefined;
  identity: Identity | undefined;
}

// The rejections of a request without a usable token: one object each, not one per request.
const NO_TOKEN = new Rejection('missing_token');
const NOT_BEARER = new Rejection('missing_token', 'Authorization header does not use the Bearer scheme');
const SEVERAL_HEADERS = new Rejection('malformed_token', 'several Authorization headers');
const EMPTY_TOKEN = new Rejection('malformed_token', 'Bearer token is empty');

/**
 * The bearer token of a request, read from the raw headers (Node keeps only the first
 * Authorization), or why there is none. Returned, not thrown: requests without a token are the
 * commonest rejection, and a throw costs more than the rest of this function.
 */
export function extractBearerToken(rawHeaders: readonly string[]): string | Rejection {
  let value: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.length === 13 && rawHeaders[i]!.toLowerCase() === 'authorization') {
      if (value !== undefined) return SEVERAL_HEADERS;
      value = rawHeaders[i + 1]!;
    }
  }
  if (value === undefined) return NO_TOKEN;
  // The scheme found by a scan that stops at the first blank, not a regular expression over the ~1 KB value.
  const header = value.trim();
  let schemeEnd = 0;
  while (schemeEnd < header.length && !isSpaceOrTab(header.charCodeAt(schemeEnd))) schemeEnd++;
  if (header.slice(0, schemeEnd).toLowerCase() !== 'bearer') {
    return NOT_BEARER;
  }
  const token = header.slice(schemeEnd).trim();
  if (token === '') return EMPTY_TOKEN;
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

/** The whole answer to a rejection (also the answer of bench:floor's measuring stick of the work every rejection owes). */
export function renderRejection(rejection: Rejection, resourceMetadataUrl: string, scopes: readonly string[] = []): ErrorResponse {
  let challenge = `Bearer resource_metadata=${quote(resourceMetadataUrl)}`;
  // The scopes a client should ask for (RESOURCE_SCOPES), as the MCP authorization spec asks of a 401.
  if (rejection.status === 401 && scopes.length > 0) challenge += `, scope=${quote(scopes.join(' '))}`;
  const error = rejection.challengeError;
  if (error !== undefined) challenge += `, error=${quote(error)}, error_description=${quote(rejection.message)}`;
  const headers: Record<string, string> = { 'www-authenticate': challenge };
  if (rejection.status === 503) headers['retry-after'] = '5';
  return new ErrorResponse(
    rejection.status,
    { error: rejection.code, reason: rejection.reason, error_description: rejection.message },
    headers,
  );
}

/**
 * Answers rejections. Reason and message decide the whole answer, and messages come from a fixed
 * set (the code's, and some naming a configured claim; never token data), so each answer is built
 * once and written straight to the response: hostile traffic is mostly rejections, and Fastify's
 * reply pipeline (headers merged, payload typed, onSend hooks; none used here) was a tenth of one.
 */
function createRejectionSender(resourceMetadataUrl: string, connections: ConnectionGuard | undefined, scopes: readonly string[]) {
  // By reason, then by message: two lookups of strings that already exist, no key built per request.
  const answers = new Map<RejectionReason, Map<string, ErrorResponse>>(REJECTION_REASONS.map((reason) => [reason, new Map()]));
  return function sendRejection(request: FastifyRequest, reply: FastifyReply, rejection: Rejection): void {
    const byMessage = answers.get(rejection.reason)!;
    let answer = byMessage.get(rejection.message);
    if (answer === undefined) {
      answer = renderRejection(rejection, resourceMetadataUrl, scopes);
      byMessage.set(rejection.message, answer);
    }
    reply.hijack();
    // Whether the connection stays: a client without a valid token cannot hold connections it
    // does not use (http/connections.ts).
    answer.write(reply.raw, request.id, connections?.connectionAfterUnaccepted(request.raw, reply.raw));
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
  // The counter of each reason found once: prom-client's inc({ reason }) hashes the labels every time.
  const rejected = new Map(REJECTION_REASONS.map((reason) => [reason, metrics.rejected.labels(reason)]));
  function reject(request: FastifyRequest, reply: FastifyReply, error: unknown): void {
    // Anything that is not a Rejection is a bug in verification: fail closed, and say so in the log.
    const rejection = error instanceof Rejection ? error : new Rejection('malformed_token');
    // Only the error's type: a message could quote the input, and the input is a token.
    if (!(error instanceof Rejection))
      request.log.error({ errorType: (error as Error | undefined)?.name }, 'verification failed unexpectedly');
    request.auth.decision = 'reject';
    request.auth.reason = rejection.reason;
    rejected.get(rejection.reason)!.inc();
    sendRejection(request, reply, rejection);
  }

  function decide(request: FastifyRequest, reply: FastifyReply, result: Verdict | Rejection, done: HookHandlerDoneFunction): void {
    if (result instanceof Rejection) {
      reject(request, reply, result);
      return;
    }
    request.auth.decision = 'accept';
    request.auth.identity = result.identity;
    metrics.accepted.inc();
    connections?.authenticated(request.raw.socket);
    done();
  }

  // performance.now() and observe(): prom-client's startTimer() allocates two closures, two hrtime
  // arrays and a labels object. With tracing the histogram keeps exemplars (observability/metrics.ts),
  // and the exemplar points at this request's trace.
  const verifyDuration = metrics.verifyDuration;
  const exemplars = (verifyDuration as unknown as { enableExemplars?: boolean }).enableExemplars === true;
  const observe = (request: FastifyRequest, startedAt: number) => {
    const value = (performance.now() - startedAt) / 1000;
    if (exemplars) verifyDuration.observe({ value, exemplarLabels: request.trace?.exemplar });
    else verifyDuration.observe(value);
  };

  return function authenticate(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (request.routeOptions.config.public === true) {
      request.auth.decision = 'public';
      // Counted like a rejection on a connection that has carried no accepted request (http/connections.ts).
      const connection = connections?.connectionAfterUnaccepted(request.raw, reply.raw);
      if (connection !== undefined) reply.raw.setHeader(connection[0], connection[1]);
      done();
      return;
    }
    const token = extractBearerToken(request.raw.rawHeaders);
    if (token instanceof Rejection) {
      reject(request, reply, token);
      return;
    }
    // Only verifications are timed: a request without a usable token would drag the quantiles down.
    const startedAt = performance.now();
    let result;
    try {
      result = verify(token, request);
    } catch (error) {
      observe(request, startedAt);
      reject(request, reply, error);
      return;
    }
    if (!(result instanceof Promise)) {
      observe(request, startedAt);
      decide(request, reply, result, done);
      return;
    }
    result.then(
      (settled) => {
        observe(request, startedAt);
        decide(request, reply, settled, done);
      },
      (error: unknown) => {
        observe(request, startedAt);
        reject(request, reply, error);
      },
    );
  };
}
