// Forwarding: inbound headers are treated as hostile (strip, then set), the body and the
// response are streamed, and upstream failures become 502/504 JSON in one place.

import type { FastifyInstance, FastifyReply, RawServerBase, RouteGenericInterface } from 'fastify';
import httpProxy from '@fastify/http-proxy';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Config } from './config.js';
import { UPSTREAM_FAILURES, type UpstreamFailureKind } from './errors.js';
import type { Metrics } from './metrics.js';
import type { Identity } from './auth/verify.js';

// Hop-by-hop headers (RFC 9110 section 7.6.1) and credentials meant for this proxy.
// On requests reply-from already drops Connection, Transfer-Encoding and the names Connection lists.
const HOP_BY_HOP = ['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection'];
const DROPPED_REQUEST_HEADERS = [...HOP_BY_HOP, 'proxy-authorization'];

/** The upstream's response headers without its hop-by-hop ones: the client's connection is ours to manage. */
export function responseHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const listed = String(headers.connection ?? '').split(',').map((name) => name.trim().toLowerCase());
  for (const name of [...HOP_BY_HOP, ...listed]) delete headers[name];
  return headers;
}

/** Header values are Latin-1 strings in Node: send a UTF-8 claim as its raw octets, as Go and Envoy do. */
function headerValue(value: string): string {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(value) ? value : Buffer.from(value, 'utf8').toString('latin1');
}

function append(existing: string | string[] | undefined, value: string): string {
  const previous = Array.isArray(existing) ? existing.join(', ') : existing;
  return previous ? `${previous}, ${value}` : value;
}

/** The headers the upstream sees. `headers` is reply-from's copy with Host already set to the upstream's. */
export function forwardedHeaders(
  request: { headers: IncomingHttpHeaders; ip: string; protocol: string; id: string },
  headers: IncomingHttpHeaders,
  identity: Identity,
  forwardAuthorization: boolean,
): IncomingHttpHeaders {
  for (const name of Object.keys(headers)) {
    if (name.startsWith('x-verified-')) delete headers[name];
  }
  for (const name of DROPPED_REQUEST_HEADERS) delete headers[name];
  if (!forwardAuthorization) delete headers.authorization;

  const clientHost = request.headers.host;
  if (clientHost !== undefined) headers['x-forwarded-host'] = clientHost;
  headers['x-forwarded-for'] = append(headers['x-forwarded-for'], request.ip);
  headers['x-forwarded-proto'] = append(headers['x-forwarded-proto'], request.protocol);
  headers['x-request-id'] = request.id;

  headers['x-verified-user'] = headerValue(identity.user);
  if (identity.subject !== undefined) headers['x-verified-subject'] = headerValue(identity.subject);
  if (identity.email !== undefined) headers['x-verified-email'] = headerValue(identity.email);
  if (identity.groups !== undefined) headers['x-verified-groups'] = headerValue(identity.groups.join(','));
  return headers;
}

/** undici error codes → SPEC's failure kinds: the one place that translates them. */
export function upstreamFailureKind(error: { code?: string; cause?: unknown }): UpstreamFailureKind {
  const code = (error.cause as { code?: string } | undefined)?.code ?? error.code;
  switch (code) {
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'FST_REPLY_FROM_GATEWAY_TIMEOUT':
      return 'timeout';
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'UND_ERR_CONNECT_TIMEOUT':
    // An https upstream whose certificate does not verify is not reachable either.
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'CERT_HAS_EXPIRED':
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return 'connect';
    default:
      return 'reset';
  }
}

export async function registerProxy(app: FastifyInstance, config: Config, metrics: Metrics): Promise<void> {
  const onError = (reply: FastifyReply<RouteGenericInterface, RawServerBase>, { error }: { error: Error & { code?: string } }) => {
    const kind = upstreamFailureKind(error);
    const failure = UPSTREAM_FAILURES[kind];
    metrics.upstreamFailures.inc({ kind });
    reply.request.log.warn({ kind, code: (error.cause as { code?: string } | undefined)?.code ?? error.code }, 'upstream request failed');
    reply.code(failure.status).header('cache-control', 'no-store').send({ error: failure.error, error_description: failure.description });
  };

  await app.register(httpProxy, {
    upstream: config.upstreamUrl,
    disableRequestLogging: true,
    // Locations pointing at the upstream are the upstream's business; leave them alone.
    internalRewriteLocationHeader: false,
    undici: {
      // reply-from's defaults would cap the upstream at 128 connections (each open MCP stream
      // holds one, so stream 129 would block every other request) and skip TLS verification.
      connections: null as unknown as number,
      connect: { rejectUnauthorized: true },
      headersTimeout: config.upstreamTimeoutSeconds * 1000,
      // Streams (SSE) may stay open for hours: no timeout on response bodies.
      bodyTimeout: 0,
    },
    replyOptions: {
      rewriteRequestHeaders: (request, headers) => {
        // Unreachable by construction (the onRequest hook rejects first); fail closed if it ever is not.
        if (request.auth.identity === undefined) throw new Error('unauthenticated request reached the proxy');
        return forwardedHeaders(request, headers, request.auth.identity, config.forwardAuthorization);
      },
      rewriteHeaders: responseHeaders,
      onResponse: (_request, reply, res) => {
        reply.send(res.stream);
        // Fastify writes headers with the first body chunk; an event stream (an MCP GET stream)
        // may stay silent for long, and the client must see its headers now.
        const raw = reply.raw as ServerResponse;
        if (String(reply.getHeader('content-type')).startsWith('text/event-stream') && !raw.headersSent) raw.flushHeaders();
      },
      onError,
    },
  });
}
