// The request hook that decides accept or reject for every non-public request on the proxy port.

import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { REJECTION_REASONS, Rejection, type RejectionReason } from '../lib/errors.js';
import { ErrorResponse } from '../lib/error-response.js';
import type { Metrics } from '../observability/metrics.js';
import type { ConnectionGuard } from '../http/connections.js';
import type { Identity, Verdict } from './verify.js';
import { checkBinding, type DpopOptions, type Scheme } from './dpop.js';

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

/** The token of a request and the scheme it came with. */
export interface Credential {
  readonly token: string;
  readonly scheme: Scheme;
}

// The rejections of a request without a usable token: one object each, not one per request.
const NO_TOKEN = new Rejection('missing_token');
const NOT_BEARER = new Rejection('missing_token', 'Authorization header does not use the Bearer scheme');
const NOT_BEARER_OR_DPOP = new Rejection('missing_token', 'Authorization header does not use the Bearer or DPoP scheme');
const BEARER_NOT_ALLOWED = new Rejection('dpop_required');
const SEVERAL_HEADERS = new Rejection('malformed_token', 'several Authorization headers');
const EMPTY_TOKEN = new Rejection('malformed_token', 'Bearer token is empty');
const EMPTY_DPOP_TOKEN = new Rejection('malformed_token', 'DPoP token is empty');

/**
 * The token of a request, read from the raw headers (Node keeps only the first Authorization),
 * or why there is none: the Bearer scheme, and with DPOP=allow the DPoP scheme too, with
 * DPOP=require only the DPoP scheme. Returned, not thrown: requests without a token are the
 * commonest rejection, and a throw costs more than the rest of this function.
 */
export function extractCredential(rawHeaders: readonly string[], dpop: 'off' | 'allow' | 'require'): Credential | Rejection {
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
  const name = header.slice(0, schemeEnd).toLowerCase();
  const scheme: Scheme | undefined = name === 'bearer' ? 'bearer' : name === 'dpop' && dpop !== 'off' ? 'dpop' : undefined;
  if (scheme === undefined) return dpop === 'off' ? NOT_BEARER : NOT_BEARER_OR_DPOP;
  if (scheme === 'bearer' && dpop === 'require') return BEARER_NOT_ALLOWED;
  const token = header.slice(schemeEnd).trim();
  if (token === '') return scheme === 'bearer' ? EMPTY_TOKEN : EMPTY_DPOP_TOKEN;
  // Not scanned for white space here (1.5 µs a request): verification accepts base64url and
  // dots only, and says so when a token holds anything else.
  return { token, scheme };
}

function isSpaceOrTab(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

function quote(value: string): string {
  return `"${value.replace(/["\\]/g, '')}"`;
}

/**
 * The WWW-Authenticate values of a rejection: Bearer (RFC 6750); with DPoP on, DPoP (RFC 9449
 * section 7.1) for a failed proof, a request that used the DPoP scheme, or DPOP=require, and
 * beside the Bearer one otherwise, so a client learns both schemes it may use.
 */
function challenges(
  rejection: Rejection,
  resourceMetadataUrl: string,
  scopes: readonly string[],
  dpop: Pick<DpopOptions, 'mode' | 'algorithms'> | undefined,
  scheme: Scheme | undefined,
): string[] {
  let params = `resource_metadata=${quote(resourceMetadataUrl)}`;
  // The scopes a client should ask for (RESOURCE_SCOPES), as the MCP authorization spec asks of a 401.
  if (rejection.status === 401 && scopes.length > 0) params += `, scope=${quote(scopes.join(' '))}`;
  const error = rejection.challengeError;
  const errorPart = error === undefined ? '' : `, error=${quote(error)}, error_description=${quote(rejection.message)}`;
  const bearer = `Bearer ${params}${errorPart}`;
  if (dpop === undefined) return [bearer];
  const algs = `algs=${quote(dpop.algorithms.join(' '))}`;
  if (dpop.mode === 'require' || rejection.dpop || scheme === 'dpop') return [`DPoP ${params}${errorPart}, ${algs}`];
  return [bearer, `DPoP ${params}, ${algs}`];
}

/** The whole answer to a rejection (also the answer of bench:floor's measuring stick of the work every rejection owes). */
export function renderRejection(
  rejection: Rejection,
  resourceMetadataUrl: string,
  scopes: readonly string[] = [],
  dpop?: Pick<DpopOptions, 'mode' | 'algorithms'>,
  scheme?: Scheme,
): ErrorResponse {
  const headers: Record<string, string | readonly string[]> = {
    'www-authenticate': challenges(rejection, resourceMetadataUrl, scopes, dpop, scheme),
  };
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
function createRejectionSender(
  resourceMetadataUrl: string,
  connections: ConnectionGuard | undefined,
  scopes: readonly string[],
  dpop: DpopOptions | undefined,
) {
  // By reason, then by message: two lookups of strings that already exist, no key built per request.
  // With DPoP on, a request that used the DPoP scheme is challenged for it alone: answers of its own.
  const byReason = () => new Map<RejectionReason, Map<string, ErrorResponse>>(REJECTION_REASONS.map((reason) => [reason, new Map()]));
  const answers = byReason();
  const dpopAnswers = dpop === undefined ? answers : byReason();
  return function sendRejection(request: FastifyRequest, reply: FastifyReply, rejection: Rejection, scheme: Scheme | undefined): void {
    const byMessage = (scheme === 'dpop' ? dpopAnswers : answers).get(rejection.reason)!;
    let answer = byMessage.get(rejection.message);
    if (answer === undefined) {
      answer = renderRejection(rejection, resourceMetadataUrl, scopes, dpop, scheme);
      byMessage.set(rejection.message, answer);
    }
    reply.hijack();
    // The nonce changes with time: never part of the remembered answer.
    const nonce = dpop?.checker.nonce();
    // Whether the connection stays: a client without a valid token cannot hold connections it
    // does not use (http/connections.ts).
    const connection = connections?.connectionAfterUnaccepted(request.raw, reply.raw);
    answer.write(reply.raw, request.id, connection, nonce === undefined ? undefined : ['dpop-nonce', nonce]);
  };
}

export function createAuthenticateHook(
  verify: RequestVerify,
  metrics: Metrics,
  resourceMetadataUrl: string,
  connections?: ConnectionGuard,
  scopes: readonly string[] = [],
  dpop?: DpopOptions,
) {
  const sendRejection = createRejectionSender(resourceMetadataUrl, connections, scopes, dpop);
  const mode = dpop?.mode ?? 'off';
  // The counter of each reason bound once; prom-client still hashes the labels on each inc.
  const rejected = new Map(REJECTION_REASONS.map((reason) => [reason, metrics.rejected.labels(reason)]));
  function reject(request: FastifyRequest, reply: FastifyReply, error: unknown, scheme?: Scheme): void {
    // Anything that is not a Rejection is a bug in verification: fail closed, and say so in the log.
    const rejection = error instanceof Rejection ? error : new Rejection('malformed_token');
    // Only the error's type: a message could quote the input, and the input is a token.
    if (!(error instanceof Rejection))
      request.log.error({ errorType: (error as Error | undefined)?.name }, 'verification failed unexpectedly');
    request.auth.decision = 'reject';
    request.auth.reason = rejection.reason;
    rejected.get(rejection.reason)!.inc();
    sendRejection(request, reply, rejection, scheme);
  }

  function accept(request: FastifyRequest, identity: Identity, done: HookHandlerDoneFunction): void {
    request.auth.decision = 'accept';
    request.auth.identity = identity;
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

  /**
   * The verdict, then possession: the token's scheme must fit it, and a DPoP request's proof is
   * checked here, after the verdict (cached or not), so no cache ever skips it. The timing covers both.
   */
  function decide(
    request: FastifyRequest,
    reply: FastifyReply,
    result: Verdict | Rejection,
    credential: Credential,
    startedAt: number,
    done: HookHandlerDoneFunction,
  ): void {
    const { token, scheme } = credential;
    if (result instanceof Rejection) {
      observe(request, startedAt);
      reject(request, reply, result, scheme);
      return;
    }
    const jkt = result.identity.jkt;
    try {
      checkBinding(scheme, jkt);
    } catch (error) {
      observe(request, startedAt);
      reject(request, reply, error, scheme);
      return;
    }
    if (scheme === 'bearer') {
      observe(request, startedAt);
      accept(request, result.identity, done);
      return;
    }
    const proofRequest = { method: request.method, url: request.url, rawHeaders: request.raw.rawHeaders, trace: request.trace };
    dpop!.checker.check(proofRequest, token, jkt!).then(
      () => {
        observe(request, startedAt);
        // The nonce for the client's next proof (RFC 9449 section 9); a rejection carries its own.
        const nonce = dpop!.checker.nonce();
        if (nonce !== undefined) reply.raw.setHeader('dpop-nonce', nonce);
        accept(request, result.identity, done);
      },
      (error: unknown) => {
        observe(request, startedAt);
        reject(request, reply, error, scheme);
      },
    );
  }

  return function authenticate(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (request.routeOptions.config.public === true) {
      request.auth.decision = 'public';
      // Counted like a rejection on a connection that has carried no accepted request (http/connections.ts).
      const connection = connections?.connectionAfterUnaccepted(request.raw, reply.raw);
      if (connection !== undefined) reply.raw.setHeader(connection[0], connection[1]);
      done();
      return;
    }
    const credential = extractCredential(request.raw.rawHeaders, mode);
    if (credential instanceof Rejection) {
      reject(request, reply, credential);
      return;
    }
    // Only verifications are timed: a request without a usable token would drag the quantiles down.
    const startedAt = performance.now();
    let result;
    try {
      result = verify(credential.token, request);
    } catch (error) {
      observe(request, startedAt);
      reject(request, reply, error, credential.scheme);
      return;
    }
    if (!(result instanceof Promise)) {
      decide(request, reply, result, credential, startedAt, done);
      return;
    }
    result.then(
      (settled) => decide(request, reply, settled, credential, startedAt, done),
      (error: unknown) => {
        observe(request, startedAt);
        reject(request, reply, error, credential.scheme);
      },
    );
  };
}
