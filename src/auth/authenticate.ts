// The request hook that decides accept or reject for every non-public request on the proxy port.

import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { Rejection } from '../lib/errors.js';
import type { Metrics } from '../observability/metrics.js';
import type { ConnectionGuard } from '../http/connections.js';
import type { Identity, Verdict, Verify } from './verify.js';
import { checkBinding, type DpopOptions, type Scheme } from './dpop.js';

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

/** The bearer token of a request (the Bearer scheme only), or why there is none. */
export function extractBearerToken(rawHeaders: readonly string[]): string | Rejection {
  const credential = extractCredential(rawHeaders, 'off');
  return credential instanceof Rejection ? credential : credential.token;
}

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
      if (value !== undefined) return new Rejection('malformed_token', 'several Authorization headers');
      value = rawHeaders[i + 1]!;
    }
  }
  if (value === undefined) return new Rejection('missing_token');
  // The scheme found by a scan that stops at the first blank, not a regular expression over the ~1 KB value.
  const header = value.trim();
  let schemeEnd = 0;
  while (schemeEnd < header.length && !isSpaceOrTab(header.charCodeAt(schemeEnd))) schemeEnd++;
  const name = header.slice(0, schemeEnd).toLowerCase();
  const scheme: Scheme | undefined = name === 'bearer' ? 'bearer' : name === 'dpop' && dpop !== 'off' ? 'dpop' : undefined;
  if (scheme === undefined) {
    return new Rejection('missing_token', `Authorization header does not use the ${dpop === 'off' ? 'Bearer' : 'Bearer or DPoP'} scheme`);
  }
  if (scheme === 'bearer' && dpop === 'require') return new Rejection('dpop_required');
  const token = header.slice(schemeEnd).trim();
  if (token === '') return new Rejection('malformed_token', `${scheme === 'bearer' ? 'Bearer' : 'DPoP'} token is empty`);
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

export interface RejectionResponse {
  status: number;
  /** Name, value, name, value... as Node's writeHead takes them; the request id comes last. */
  headers: string[];
  body: string;
}

/**
 * The WWW-Authenticate values of a rejection: Bearer (RFC 6750); with DPoP on, DPoP (RFC 9449
 * section 7.1) for a failed proof, a request that used the DPoP scheme, or DPOP=require, and
 * beside the Bearer one otherwise, so a client learns both schemes it may use.
 */
function challenges(
  rejection: Rejection,
  resourceMetadataUrl: string,
  dpop: Pick<DpopOptions, 'mode' | 'algorithms'> | undefined,
  scheme: Scheme | undefined,
): string[] {
  const error = rejection.challengeError;
  const errorPart = error === undefined ? '' : `, error=${quote(error)}, error_description=${quote(rejection.message)}`;
  const metadata = `resource_metadata=${quote(resourceMetadataUrl)}`;
  const bearer = `Bearer ${metadata}${errorPart}`;
  if (dpop === undefined) return [bearer];
  const algs = `algs=${quote(dpop.algorithms.join(' '))}`;
  if (dpop.mode === 'require' || rejection.dpop || scheme === 'dpop') return [`DPoP ${metadata}${errorPart}, ${algs}`];
  return [bearer, `DPoP ${metadata}, ${algs}`];
}

/** The whole answer to a rejection (also the answer of bench:floor's measuring stick of the work every rejection owes). */
export function renderRejection(
  rejection: Rejection,
  resourceMetadataUrl: string,
  dpop?: Pick<DpopOptions, 'mode' | 'algorithms'>,
  scheme?: Scheme,
): RejectionResponse {
  const body = JSON.stringify({ error: rejection.code, reason: rejection.reason, error_description: rejection.message });
  const headers = ['content-type', 'application/json; charset=utf-8', 'content-length', String(Buffer.byteLength(body))];
  for (const challenge of challenges(rejection, resourceMetadataUrl, dpop, scheme)) headers.push('www-authenticate', challenge);
  headers.push('cache-control', 'no-store');
  if (rejection.status === 503) headers.push('retry-after', '5');
  return { status: rejection.status, headers, body };
}

/**
 * Answers rejections. Reason and message decide the whole answer, and messages come from a fixed
 * set (the code's, and some naming a configured claim; never token data), so each answer is built
 * once and written straight to the response: hostile traffic is mostly rejections, and Fastify's
 * reply pipeline (headers merged, payload typed, onSend hooks; none used here) was a tenth of one.
 */
function createRejectionSender(resourceMetadataUrl: string, connections: ConnectionGuard | undefined, dpop: DpopOptions | undefined) {
  const rendered = new Map<string, RejectionResponse>();
  return function sendRejection(request: FastifyRequest, reply: FastifyReply, rejection: Rejection, scheme: Scheme | undefined): void {
    // The challenge depends on the scheme only with DPoP on.
    const id = `${dpop !== undefined && scheme === 'dpop' ? 'd' : ''}${rejection.reason}:${rejection.message}`;
    let response = rendered.get(id);
    if (response === undefined) {
      response = renderRejection(rejection, resourceMetadataUrl, dpop, scheme);
      rendered.set(id, response);
    }
    reply.hijack();
    const headers = [...response.headers, 'x-request-id', request.id];
    // The nonce changes with time: never part of the remembered answer.
    const nonce = dpop?.checker.nonce();
    if (nonce !== undefined) headers.push('dpop-nonce', nonce);
    // A connection that never carried an accepted request is not kept after a rejection: a
    // client without a valid token cannot hold connections (http/connections.ts).
    if (connections !== undefined && !connections.isAuthenticated(request.raw.socket)) headers.push('connection', 'close');
    reply.raw.writeHead(response.status, headers);
    reply.raw.end(response.body);
  };
}

export function createAuthenticateHook(
  verify: Verify,
  metrics: Metrics,
  resourceMetadataUrl: string,
  connections?: ConnectionGuard,
  dpop?: DpopOptions,
) {
  const sendRejection = createRejectionSender(resourceMetadataUrl, connections, dpop);
  const mode = dpop?.mode ?? 'off';
  function reject(request: FastifyRequest, reply: FastifyReply, error: unknown, scheme?: Scheme): void {
    // Anything that is not a Rejection is a bug in verification: fail closed, and say so in the log.
    const rejection = error instanceof Rejection ? error : new Rejection('malformed_token');
    // Only the error's type: a message could quote the input, and the input is a token.
    if (!(error instanceof Rejection))
      request.log.error({ errorType: (error as Error | undefined)?.name }, 'verification failed unexpectedly');
    request.auth.decision = 'reject';
    request.auth.reason = rejection.reason;
    metrics.rejected.inc({ reason: rejection.reason });
    sendRejection(request, reply, rejection, scheme);
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
    const credential = extractCredential(request.raw.rawHeaders, mode);
    if (credential instanceof Rejection) {
      reject(request, reply, credential);
      return;
    }
    const { token, scheme } = credential;
    // Only verifications are timed: a request without a usable token would drag the quantiles down.
    const stopTimer = metrics.verifyDuration.startTimer();
    const failed = (error: unknown) => {
      stopTimer();
      reject(request, reply, error, scheme);
    };
    const passed = (identity: Identity) => {
      stopTimer();
      accept(request, identity);
      done();
    };
    // The token's scheme must fit its verdict, and a DPoP request's proof is checked here, after
    // the verdict (cached or not): no cache ever skips it.
    const possession = (verdict: Verdict): void => {
      try {
        checkBinding(scheme, verdict.identity.jkt);
      } catch (error) {
        failed(error);
        return;
      }
      if (scheme === 'bearer') {
        passed(verdict.identity);
        return;
      }
      const nonce = dpop!.checker.nonce();
      if (nonce !== undefined) reply.raw.setHeader('dpop-nonce', nonce);
      const proofRequest = { method: request.method, url: request.url, rawHeaders: request.raw.rawHeaders };
      dpop!.checker.check(proofRequest, token, verdict.identity.jkt!).then(() => passed(verdict.identity), failed);
    };
    let result;
    try {
      result = verify(token);
    } catch (error) {
      failed(error);
      return;
    }
    if (result instanceof Promise) result.then(possession, failed);
    else possession(result);
  };
}
