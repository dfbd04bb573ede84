// Requests refused for how they are sent rather than for their token (HTTP_REFUSALS in lib/errors.ts):
// by Node's parser before Fastify sees them, by Fastify's router before the hooks, and by the
// edge checks that come before authentication. Each gets a fixed answer that echoes nothing, its
// request line and its count. Never logged: the raw bytes Node hands over with a parser error
// (`rawPacket`), which hold the bearer token as often as not.

import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { HTTP_REFUSALS, HTTP_REFUSAL_REASONS, type HttpRefusalReason } from '../lib/errors.js';
import { pathOf } from '../lib/request-target.js';
import { CLOSE, prepare } from '../lib/error-response.js';
import type { Metrics } from '../observability/metrics.js';

// A client refused for how it speaks HTTP does not keep the connection (nor its memory).
const ANSWERS = new Map(HTTP_REFUSAL_REASONS.map((reason) => [reason, prepare(HTTP_REFUSALS[reason], reason)]));

function writeRefusal(res: ServerResponse, reason: HttpRefusalReason, requestId: string): void {
  ANSWERS.get(reason)!.write(res, requestId, CLOSE);
}

/** Answers a request the edge checks refuse, from a hook; the request line is written when it closes. */
export function sendRefusal(request: FastifyRequest, reply: FastifyReply, metrics: Metrics, reason: HttpRefusalReason): void {
  request.auth.decision = 'reject';
  request.auth.reason = reason;
  metrics.httpRefused.inc({ reason });
  reply.hijack();
  writeRefusal(reply.raw, reason, request.id);
}

/**
 * Why a request is refused before its token is looked at, if it is: an `Origin` not listed in
 * ALLOWED_ORIGINS (the MCP transport's DNS-rebinding rule; requests without one are unaffected),
 * or a transfer coding other than plain `chunked`, which Node would de-chunk and the upstream
 * would then receive without the other codings (Envoy answers 501 too).
 */
export function createEdgeCheck(allowedOrigins: readonly string[]): (headers: IncomingHttpHeaders) => HttpRefusalReason | undefined {
  const origins = new Set(allowedOrigins.map((origin) => origin.toLowerCase()));
  return function edgeCheck(headers) {
    const origin = headers.origin;
    // Several Origin headers arrive joined with ", ", which matches no entry: refused.
    if (origin !== undefined && !origins.has(origin.toLowerCase())) return 'origin_not_allowed';
    const coding = headers['transfer-encoding'];
    if (coding !== undefined && coding.toLowerCase() !== 'chunked') return 'unsupported_transfer_coding';
    return undefined;
  };
}

function clientErrorReason(code: string | undefined): HttpRefusalReason {
  if (code === 'HPE_HEADER_OVERFLOW') return 'headers_too_large';
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'request_timeout';
  return 'bad_request';
}

/**
 * Fastify's `clientErrorHandler`: Node's parser refused what came on a connection. Replaces
 * Fastify's default, which logs the error with its `rawPacket` at trace. What is written follows
 * Node's own handler: an answer only when no response on this connection has started.
 */
export function createClientErrorHandler(logger: Logger, metrics: Metrics) {
  return function onClientError(error: Error & { code?: string }, socket: Socket): void {
    // A reset: the client is gone, nothing was refused.
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const reason = clientErrorReason(error.code);
    const answer = ANSWERS.get(reason)!;
    const reqId = randomUUID();
    metrics.httpRefused.inc({ reason });
    // Only fixed fields: the error's message and its raw packet may quote the request.
    logger.info({ reqId, status: answer.status, decision: 'reject', reason, parserError: error.code }, 'request');
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (socket.writable && inFlight?.headersSent !== true) socket.write(answer.text(reqId));
    socket.destroy();
  };
}

/**
 * Fastify's `frameworkErrors`: the router refused the target (`/mcp%ZZ`: not decodable) before any
 * hook ran. Fastify's own answer quotes the whole target, query string included.
 */
export function createFrameworkErrorHandler(logger: Logger, metrics: Metrics) {
  return function onFrameworkError(_error: Error, request: FastifyRequest, reply: FastifyReply): void {
    const reason: HttpRefusalReason = 'bad_target';
    const { status } = HTTP_REFUSALS[reason];
    metrics.httpRefused.inc({ reason });
    reply.hijack();
    writeRefusal(reply.raw, reason, request.id);
    logger.info(
      {
        reqId: request.id,
        method: request.method,
        path: pathOf(request.url),
        status,
        decision: 'reject',
        reason,
      },
      'request',
    );
  };
}
