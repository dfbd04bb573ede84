// Forwarding: inbound headers are treated as hostile (strip, then set), the request body and the
// response are streamed, and upstream failures become 502/504 JSON in one place.
//
// Requests go to the upstream through one undici Pool with `dispatch`, and the upstream's answer
// is written straight into Node's ServerResponse: no intermediate streams, which made this path
// cost 29 µs a request where @fastify/reply-from costs 49 µs (bench/RESULTS.md), and the client's
// disconnect aborts the upstream request at any stage, before response headers included.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Config } from '../config/config.js';
import { OWN_ERRORS, UPSTREAM_FAILURES, type UpstreamFailureKind } from '../lib/errors.js';
import { type ErrorResponse, prepare } from '../lib/error-response.js';
import type { Metrics } from '../observability/metrics.js';
import { Pool } from '../lib/undici.js';
import { privateCacheControl } from './cache-control.js';
import { pathOf } from '../lib/request-target.js';
import type { Identity } from '../auth/verify.js';

// Hop-by-hop headers (RFC 9110 section 7.6.1), credentials meant for this proxy, and `expect`
// (Node has already answered 100-continue; undici refuses to send it).
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection']);
const NOT_FORWARDED = new Set([...HOP_BY_HOP, 'proxy-authorization', 'expect', 'host', 'x-request-id']);
const FORWARDED_METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'];

const UPSTREAM_ANSWERS = Object.fromEntries(
  (Object.keys(UPSTREAM_FAILURES) as UpstreamFailureKind[]).map((kind) => [kind, prepare(UPSTREAM_FAILURES[kind])]),
) as Record<UpstreamFailureKind, ErrorResponse>;
const PATH_NOT_PLAIN = prepare(OWN_ERRORS.path_not_plain);
const SERVER_ERROR = prepare(OWN_ERRORS.server_error);
const METHOD_NOT_FORWARDED = prepare(OWN_ERRORS.method_not_forwarded, undefined, { allow: FORWARDED_METHODS.join(', ') });
const EXCHANGE_FAILED_ANSWER = prepare(OWN_ERRORS.token_exchange_failed, 'token_exchange_failed');

/** The header names a Connection header lists: hop-by-hop too (RFC 9110 section 7.6.1). */
function connectionListed(connection: string | string[] | undefined): Set<string> | undefined {
  if (connection === undefined) return undefined;
  const value = String(connection).toLowerCase();
  // What nearly every peer sends lists no other header (keep-alive is hop-by-hop already): no set to build.
  if (value === 'keep-alive' || value === 'close') return undefined;
  return new Set(value.split(',').map((name) => name.trim()));
}

function isEventStream(contentType: OutgoingHttpHeaders[string]): boolean {
  return typeof contentType === 'string' && contentType.slice(0, 17).toLowerCase() === 'text/event-stream';
}

/**
 * Headers the sidecar reads to judge a request (the body's type and coding, the MCP session and
 * version, the 2026-07-28 Mcp-* headers): a client listing one in `Connection` must not make the
 * upstream see a request without it while the sidecar judged it with it. Kept whatever
 * `Connection` says; the headers the sidecar sets (identity, X-Forwarded-*, X-Request-Id) are
 * set after the client's are stripped, so no listing removes those either.
 */
function isJudgedHeader(name: string): boolean {
  return name.startsWith('mcp-') || name === 'content-type' || name === 'content-length' || name === 'content-encoding';
}

/** The upstream's response headers without its hop-by-hop ones: the client's connection is ours to manage. */
export function responseHeaders(headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const listed = connectionListed(headers.connection);
  const kept: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (!HOP_BY_HOP.has(name) && listed?.has(name) !== true) kept[name] = headers[name];
  }
  return kept;
}

/** Header values are Latin-1 strings in Node: send a UTF-8 claim as its raw octets, as Go and Envoy do. */
function headerValue(value: string): string {
  // eslint-disable-next-line no-control-regex -- ASCII is a range of control and printable characters
  return /^[\x00-\x7f]*$/.test(value) ? value : Buffer.from(value, 'utf8').toString('latin1');
}

function append(existing: string | string[] | undefined, value: string): string {
  const previous = Array.isArray(existing) ? existing.join(', ') : existing;
  return previous ? `${previous}, ${value}` : value;
}

/**
 * Whether an inbound header names one of ours: `X-Verified-*` in any case, also spelled with `_`
 * for `-`, which WSGI, CGI and other stacks fold into the same name (oauth2-proxy's
 * CVE-2025-64484). Node gives the names lower-cased.
 */
export function isIdentityHeaderName(name: string): boolean {
  if (name.charCodeAt(0) !== 0x78 /* x */ || name.length < 11) return false;
  return name.startsWith('x-verified-') || name.replaceAll('_', '-').startsWith('x-verified-');
}

/** X-Verified-Groups when the whole list is over `maxBytes`: the groups that fit, whole and in the token's order. */
export function groupsThatFit(groups: readonly string[], maxBytes: number): string {
  let value = '';
  for (const group of groups) {
    const next = value === '' ? headerValue(group) : `${value},${headerValue(group)}`;
    if (next.length > maxBytes) break;
    value = next;
  }
  return value;
}

/**
 * What the upstream gets in Authorization (UPSTREAM_TOKEN): nothing, the client's own header
 * (`forward`, with its DPoP proof), or a value of the sidecar's (an exchanged token).
 */
export type UpstreamAuthorization = 'forward' | { readonly value: string } | undefined;

/**
 * The Authorization value for the upstream of an accepted request (UPSTREAM_TOKEN=exchange), or
 * its promise; a rejection (the exchange failed) is answered 502, nothing forwarded.
 */
export type UpstreamCredential = (request: FastifyRequest) => string | Promise<string>;

/** The headers the upstream sees: the client's, less what is not ours to pass on, plus ours. */
export function forwardedHeaders(
  request: { headers: IncomingHttpHeaders; ip: string; protocol: string; id: string },
  upstreamHost: string,
  identity: Identity,
  authorization: UpstreamAuthorization,
  groupsHeaderMaxBytes = Infinity,
): Record<string, string | string[]> {
  const inbound = request.headers;
  const listed = connectionListed(inbound.connection);
  const headers: Record<string, string | string[]> = {};
  const forward = authorization === 'forward';
  for (const name in inbound) {
    if (NOT_FORWARDED.has(name) || isIdentityHeaderName(name) || (listed?.has(name) === true && !isJudgedHeader(name))) continue;
    // The client's credentials (a token, a DPoP proof) are the sidecar's to check, not the upstream's.
    if ((name === 'authorization' || name === 'dpop') && !forward) continue;
    headers[name] = inbound[name]!;
  }
  if (authorization !== undefined && !forward) headers.authorization = authorization.value;
  // The Go MCP SDK answers 403 to a non-loopback Host arriving on loopback: the upstream sees its own.
  headers.host = upstreamHost;
  if (inbound.host !== undefined) headers['x-forwarded-host'] = inbound.host;
  headers['x-forwarded-for'] = append(inbound['x-forwarded-for'], request.ip);
  headers['x-forwarded-proto'] = append(inbound['x-forwarded-proto'], request.protocol);
  headers['x-request-id'] = request.id;

  headers['x-verified-user'] = headerValue(identity.user);
  if (identity.subject !== undefined) headers['x-verified-subject'] = headerValue(identity.subject);
  if (identity.issuer !== undefined) headers['x-verified-issuer'] = headerValue(identity.issuer);
  if (identity.email !== undefined) headers['x-verified-email'] = headerValue(identity.email);
  if (identity.groups !== undefined) {
    const all = headerValue(identity.groups.join(','));
    if (all.length <= groupsHeaderMaxBytes) {
      headers['x-verified-groups'] = all;
    } else {
      // Cut, and said so: the upstream must not take a partial list for the whole one.
      const fitting = groupsThatFit(identity.groups, groupsHeaderMaxBytes);
      if (fitting !== '') headers['x-verified-groups'] = fitting;
      headers['x-verified-groups-truncated'] = 'true';
    }
  }
  return headers;
}

/** Whether a request target is an absolute path without `.` or `..` segments, also percent-encoded. */
export function isPlainPath(url: string): boolean {
  if (url.charCodeAt(0) !== 0x2f /* / */) return false;
  const path = pathOf(url);
  if (!path.includes('.') && !/%2e/i.test(path)) return true;
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return false;
  }
  // The upstream may resolve dot segments (or treat `\` as `/`) differently from us: refuse them.
  return !decoded.split(/[/\\]/).some((segment) => segment === '.' || segment === '..');
}

/** undici error codes → the documented failure kinds: the one place that translates them. */
export function upstreamFailureKind(error: { code?: string; cause?: unknown }): UpstreamFailureKind {
  const code = (error.cause as { code?: string } | undefined)?.code ?? error.code;
  switch (code) {
    case 'UND_ERR_HEADERS_TIMEOUT':
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

/**
 * Reads a response as it passes (mcp/framing.ts implements it); the proxy writes what it returns.
 * Everything here is synchronous and on the response's path: keep it cheap.
 */
export interface ResponseReader {
  /** Response headers have arrived. false: hold them until the end (the body is rewritten whole; the proxy sets its Content-Length). */
  onStart(statusCode: number, headers: OutgoingHttpHeaders): boolean;
  /** A chunk from the upstream; returns the bytes to write now: the chunk itself, other bytes, or nothing yet. */
  onData(chunk: Buffer): Buffer | undefined;
  /** The upstream's response ended; returns what is left to write. */
  onEnd(): Buffer | undefined;
  /** The upstream failed, before or during the response. */
  onError(kind: UpstreamFailureKind): void;
  /** The client went away before the response ended. */
  onClientGone(): void;
}

/** How to forward one request, when something looked at it first. */
export interface Forwarding {
  /** Body bytes already read from the client, sent first. */
  readonly head: Buffer | undefined;
  /** Whether the rest of the client's body stream follows (the whole stream when `head` is undefined). */
  readonly streamRest: boolean;
  readonly reader: ResponseReader | undefined;
}

/**
 * Looks at a request before it is forwarded. undefined: forward it as it is (the cheap path);
 * a Forwarding (or its promise): forward it so; 'answered': the interceptor wrote the response.
 */
export type Interceptor = (request: FastifyRequest, res: ServerResponse) => Forwarding | Promise<Forwarding | 'answered'> | undefined;

/** The body a Forwarding describes, as undici takes it. */
function forwardedBody(raw: FastifyRequest['raw'], forwarding: Forwarding): Buffer | Readable | null {
  const { head, streamRest } = forwarding;
  if (!streamRest) return head ?? null;
  if (head === undefined) return raw;
  return Readable.from(
    (async function* () {
      yield head;
      for await (const chunk of raw) yield chunk as Buffer;
    })(),
    { objectMode: false },
  );
}

type FailureListener = (request: FastifyRequest, kind: UpstreamFailureKind, error: Error & { code?: string }) => void;

/** A Forward: one request sent to the upstream, its answer written to the client as it arrives. */
class Forward implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private finished = false;
  private clientGone = false;
  private bodyStarted = false;
  private corked = false;
  /** Status and headers held back until the reader's rewrite is done. */
  private held: { statusCode: number; headers: OutgoingHttpHeaders } | undefined;

  constructor(
    private readonly request: FastifyRequest,
    private readonly res: ServerResponse,
    private readonly onFailure: FailureListener,
    private readonly reader: ResponseReader | undefined,
  ) {
    // 'close' also follows a normal end; only an unfinished forward is aborted.
    res.once('close', () => {
      if (this.finished) return;
      this.clientGone = true;
      this.reader?.onClientGone();
      this.controller?.abort(new Error('client closed the connection'));
    });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.clientGone) controller.abort(new Error('client closed the connection'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[]>): void {
    const outgoing = responseHeaders(headers);
    outgoing['x-request-id'] ??= this.request.id;
    // Every forwarded request is authenticated: its answer is one user's.
    outgoing['cache-control'] = privateCacheControl(outgoing['cache-control']);
    // A proxy in front (nginx) must not buffer an event stream (the MCP transport's SHOULD).
    if (isEventStream(outgoing['content-type'])) outgoing['x-accel-buffering'] = 'no';
    if (this.reader !== undefined && !this.reader.onStart(statusCode, outgoing)) {
      this.held = { statusCode, headers: outgoing };
      return;
    }
    try {
      this.res.writeHead(statusCode, outgoing);
    } catch (error) {
      // A status or header Node refuses to send: the upstream's answer is unusable, so 502.
      controller.abort(error as Error);
      return;
    }
    // Node sends headers with the first body chunk; an event stream (an MCP GET stream) may stay
    // silent for long, and the client must see its headers now, or at the latest once the data
    // that came with them has been written (one write instead of two).
    if (isEventStream(outgoing['content-type'])) setImmediate(() => this.flushHeadersOfSilentStream());
  }

  private flushHeadersOfSilentStream(): void {
    // `headersSent` is already true after writeHead: Node has the headers, not the client.
    if (!this.bodyStarted && !this.finished && !this.res.destroyed) this.res.flushHeaders();
  }

  onResponseData(controller: Dispatcher.DispatchController, received: Buffer): void {
    let chunk: Buffer | undefined = received;
    if (this.reader !== undefined) {
      chunk = this.reader.onData(received);
      if (chunk === undefined || chunk.length === 0) return;
    }
    this.bodyStarted = true;
    // What arrives in one read from the upstream (often the last events and the end of a stream)
    // leaves in one write. The socket itself is corked and uncorked: on Node 24 the response lets
    // go of its socket when it finishes, and an uncork through the response would then be lost.
    const socket = this.res.socket;
    if (socket !== null && !this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    this.finished = true;
    const rest = this.reader?.onEnd();
    if (this.held !== undefined) {
      const { statusCode, headers } = this.held;
      headers['content-length'] = rest?.length ?? 0;
      try {
        this.res.writeHead(statusCode, headers);
      } catch {
        this.res.destroy();
        return;
      }
    }
    this.res.end(rest);
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error & { code?: string }): void {
    this.finished = true;
    if (this.clientGone) return;
    const kind = upstreamFailureKind(error);
    this.onFailure(this.request, kind, error);
    this.reader?.onError(kind);
    if (this.res.headersSent) {
      // Mid-response: all the client can be told is that the response is cut short.
      this.res.destroy();
      return;
    }
    UPSTREAM_ANSWERS[kind].write(this.res, this.request.id);
  }
}

/** The answer when the upstream's own token could not be obtained (UPSTREAM_TOKEN=exchange). */
function sendExchangeFailure(request: FastifyRequest, res: ServerResponse, forwarding: Forwarding | undefined): void {
  request.auth.reason = 'token_exchange_failed';
  // The messages read from the body end as the upstream's failure: they never reached it.
  forwarding?.reader?.onError('connect');
  if (res.destroyed) return;
  EXCHANGE_FAILED_ANSWER.write(res, request.id);
}

export function registerProxy(
  app: FastifyInstance,
  config: Config,
  metrics: Metrics,
  intercept?: Interceptor,
  upstreamCredential?: UpstreamCredential,
): void {
  const upstream = new URL(config.upstreamUrl);
  const pool = new Pool(upstream.origin, {
    // Unbounded: each open MCP stream holds a connection, and stream 129 must not block the rest.
    connections: null,
    connect: { rejectUnauthorized: true },
    headersTimeout: config.upstreamTimeoutSeconds * 1000,
    // Streams (SSE) may stay open for hours: no timeout on response bodies.
    bodyTimeout: 0,
  });
  app.addHook('onClose', async () => {
    await pool.destroy();
  });

  const onFailure: FailureListener = (request, kind, error) => {
    metrics.upstreamFailures.inc({ kind });
    request.log.warn({ kind, code: (error.cause as { code?: string } | undefined)?.code ?? error.code }, 'upstream request failed');
  };

  // UPSTREAM_TOKEN=none or forward: the same for every request.
  const fixedAuthorization: UpstreamAuthorization = config.upstreamToken === 'forward' ? 'forward' : undefined;
  const EXCHANGE_FAILED = Symbol('exchange failed');
  type Credential = UpstreamAuthorization | Promise<UpstreamAuthorization | typeof EXCHANGE_FAILED>;
  /** The upstream's Authorization for a request: started before the body is read, so the two overlap. */
  const credentialFor = (request: FastifyRequest): Credential => {
    if (upstreamCredential === undefined) return fixedAuthorization;
    const value = upstreamCredential(request);
    if (!(value instanceof Promise)) return { value };
    // Settled at once into a value: a rejection waiting for the body to be read would be unhandled.
    return value.then(
      (authorization) => ({ value: authorization }),
      () => EXCHANGE_FAILED,
    );
  };

  const forward = (request: FastifyRequest, reply: FastifyReply): void => {
    // Unreachable by construction (the onRequest hook rejects first); fail closed if it ever is not.
    const identity = request.auth.identity;
    if (identity === undefined) throw new Error('unauthenticated request reached the proxy');
    if (!isPlainPath(request.url)) {
      reply.hijack();
      PATH_NOT_PLAIN.write(reply.raw, request.id);
      return;
    }
    reply.hijack();
    const credential = credentialFor(request);
    const forwarding = intercept?.(request, reply.raw);
    if (forwarding === undefined) {
      dispatch(request, reply.raw, identity, undefined, credential);
    } else if (forwarding instanceof Promise) {
      forwarding.then(
        (prepared) => {
          if (prepared !== 'answered') dispatch(request, reply.raw, identity, prepared, credential);
        },
        (error: unknown) => {
          // A bug in the interceptor: fail closed, nothing forwarded.
          request.log.error({ err: error }, 'request interceptor failed');
          SERVER_ERROR.write(reply.raw, request.id);
        },
      );
    } else {
      dispatch(request, reply.raw, identity, forwarding, credential);
    }
  };

  const dispatch = (
    request: FastifyRequest,
    res: ServerResponse,
    identity: Identity,
    forwarding: Forwarding | undefined,
    credential: Credential,
  ): void => {
    if (credential instanceof Promise) {
      void credential.then((settled) => {
        if (settled === EXCHANGE_FAILED) sendExchangeFailure(request, res, forwarding);
        else if (res.destroyed) forwarding?.reader?.onClientGone();
        else dispatch(request, res, identity, forwarding, settled);
      });
      return;
    }
    const { headers } = request;
    let body: ReturnType<typeof forwardedBody>;
    if (forwarding === undefined) {
      const hasBody =
        (headers['content-length'] !== undefined && headers['content-length'] !== '0') || headers['transfer-encoding'] !== undefined;
      body = hasBody ? request.raw : null;
    } else {
      body = forwardedBody(request.raw, forwarding);
    }
    const outgoing = forwardedHeaders(request, upstream.host, identity, credential, config.groupsHeaderMaxBytes);
    // With tracing, the upstream span starts here and the headers name it as the upstream's parent.
    const reader =
      request.trace === undefined ? forwarding?.reader : request.trace.upstream(outgoing, request.method, request.url, forwarding?.reader);
    pool.dispatch(
      {
        method: request.method,
        // The target exactly as the client sent it: Coder may sign it.
        path: request.url,
        headers: outgoing,
        body,
      },
      new Forward(request, res, onFailure, reader),
    );
  };

  app.register(async (scope) => {
    // The body is streamed to the upstream untouched: no parser may read it first.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    scope.route({ method: FORWARDED_METHODS, url: '/', handler: forward });
    scope.route({ method: FORWARDED_METHODS, url: '/*', handler: forward });
  });
  // Every path is routed, so what is not found is a method not forwarded. Fastify's own answer
  // quotes the target, query string included.
  app.setNotFoundHandler((request, reply) => {
    reply.hijack();
    METHOD_NOT_FORWARDED.write(reply.raw, request.id);
  });
}
