// The spans of one request on the proxy port, named and attributed as OpenTelemetry's semantic
// conventions say (HTTP here; MCP for the messages); where they are silent, the names of the
// audit line and the metrics under `mcp_auth.`. Never a token, an Authorization header, a query
// string or an argument value: only the attributes written below.

import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { FastifyRequest } from 'fastify';
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AuthState } from '../auth/authenticate.js';
import type { ResponseReader } from '../http/proxy.js';
import type { UpstreamFailureKind } from '../lib/errors.js';
import { cut, type Spans } from './span.js';
import type { Caller, ClientMessage } from '../mcp/guard.js';
import { MessageTrace, baggageOf, type MessageScope } from './mcp-trace.js';

// HTTP's methods as the conventions know them; any other is `_OTHER`.
const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE']);

const traceContext = new W3CTraceContextPropagator();
const headerGetter = {
  get: (headers: IncomingHttpHeaders, key: string) => headers[key],
  keys: (headers: IncomingHttpHeaders) => Object.keys(headers),
};

/** W3C `traceparent` of a span. */
export function traceparentOf(span: Span): string {
  const { traceId, spanId, traceFlags } = span.spanContext();
  return `00-${traceId}-${spanId}-0${(traceFlags & 1).toString(16)}`;
}

/** The client's trace context from `traceparent` and `tracestate`, else the root. */
function parentFromHeaders(headers: IncomingHttpHeaders): Context {
  return headers.traceparent === undefined ? ROOT_CONTEXT : traceContext.extract(ROOT_CONTEXT, headers, headerGetter);
}

function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/** The upstream as the client span's attributes describe it. */
export interface UpstreamTarget {
  readonly origin: string;
  readonly address: string;
  readonly port: number;
}

export function upstreamTarget(upstreamUrl: string): UpstreamTarget {
  const url = new URL(upstreamUrl);
  return {
    origin: url.origin,
    address: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port),
  };
}

export class RequestTrace {
  /** The SERVER span: started when the request arrives, ended when its response closes. */
  readonly span: Span;
  readonly context: Context;
  /** Set when the span is recorded (sampled): the request line's ids. */
  readonly traceId: string | undefined;
  readonly spanId: string | undefined;
  /** The labels of an exemplar pointing at this trace (verification time). */
  readonly exemplar: { trace_id: string; span_id: string } | undefined;
  /** What an upstream request is a child of: this span, or the span of the one MCP request in the body. */
  private upstreamParent: Context;
  /** The `baggage` of a `_meta` trace context that parents the upstream request. */
  private metaBaggage: string | undefined;
  /** Whether a `_meta` trace context parents the upstream request (its tracestate goes with it). */
  private fromMeta = false;
  private readonly httpVersion: string;

  constructor(
    private readonly spans: Spans,
    private readonly target: UpstreamTarget,
    request: FastifyRequest,
  ) {
    const method = KNOWN_METHODS.has(request.method) ? request.method : '_OTHER';
    const route = request.routeOptions.url;
    const attributes: Attributes = {
      'http.request.method': method,
      'url.scheme': request.protocol,
      'url.path': cut(pathOf(request.url)),
    };
    if (route !== undefined) attributes['http.route'] = route;
    if (method === '_OTHER') attributes['http.request.method_original'] = request.method;
    const agent = request.headers['user-agent'];
    if (agent !== undefined) attributes['user_agent.original'] = cut(agent);
    const parent = parentFromHeaders(request.headers);
    this.httpVersion = request.raw.httpVersion === '2.0' ? '2' : request.raw.httpVersion;
    this.span = spans.start(route === undefined ? method : `${method} ${route}`, SpanKind.SERVER, parent, attributes);
    this.context = trace.setSpan(ROOT_CONTEXT, this.span);
    this.upstreamParent = this.context;
    if (this.span.isRecording()) {
      const { traceId, spanId } = this.span.spanContext();
      this.traceId = traceId;
      this.spanId = spanId;
      this.exemplar = { trace_id: traceId, span_id: spanId };
    }
  }

  /** The response closed: status, a rejection's reason (`error.type`), who was accepted. */
  end(request: FastifyRequest, res: ServerResponse, auth: AuthState): void {
    const span = this.span;
    if (span.isRecording()) {
      const status = res.statusCode;
      const attributes: Attributes = {};
      if (res.headersSent) attributes['http.response.status_code'] = status;
      // A rejection's or refusal's reason is its class of error; 4xx leave the status unset (the HTTP conventions).
      if (auth.reason !== undefined) attributes['error.type'] = auth.reason;
      else if (!res.headersSent) attributes['error.type'] = 'aborted';
      else if (status >= 500) attributes['error.type'] = String(status);
      const identity = auth.identity;
      if (identity !== undefined) {
        // Read for X-Forwarded-For already; for a rejection it would cost a system call a connection.
        attributes['client.address'] = request.ip;
        attributes['user.name'] = identity.user;
        if (identity.subject !== undefined) attributes['user.id'] = identity.subject;
      }
      span.setAttributes(attributes);
      if (status >= 500 || !res.headersSent) span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  }

  /** A child of this request's span (verification, a guard's decision); `startTime` from performance.now(). */
  child(name: string, parent: Context = this.context, startTime?: number): Span {
    return this.spans.start(name, SpanKind.INTERNAL, parent, {}, startTime);
  }

  /**
   * The MCP messages read from the body: a span each (mcp-trace.ts). The one request of a body
   * is the upstream request's parent, so that the upstream joins its trace.
   */
  messages(
    messages: readonly ClientMessage[],
    caller: Caller,
    scope: Pick<MessageScope, 'protocolVersion' | 'listed' | 'label'>,
  ): MessageTrace[] | undefined {
    if (!this.span.isRecording() && !messages.some((message) => message.params?._meta !== undefined)) return undefined;
    const full: MessageScope = { ...scope, spans: this.spans, request: this.context, httpVersion: this.httpVersion };
    const traces = messages.map((message) => new MessageTrace(this.spans, full, message, caller));
    const requests = traces.filter((_, i) => messages[i]!.id !== undefined);
    if (requests.length === 1) {
      this.upstreamParent = requests[0]!.context;
      if (requests[0]!.meta !== undefined) {
        this.fromMeta = true;
        this.metaBaggage = baggageOf(requests[0]!.meta);
      }
    }
    return traces;
  }

  /**
   * The upstream request is about to go: its CLIENT span starts, and `headers` (the forwarded
   * ones) carry it as the upstream's parent. Returns the reader that ends the span.
   */
  upstream(
    headers: Record<string, string | string[]>,
    method: string,
    url: string,
    reader: ResponseReader | undefined,
  ): ResponseReader | undefined {
    const parent = trace.getSpan(this.upstreamParent)!;
    if (!parent.isRecording()) {
      // Sampled out: the upstream still learns the trace and that it is not sampled.
      headers.traceparent = traceparentOf(parent);
      this.stateOf(parent, headers);
      return reader;
    }
    const target = this.target;
    const known = KNOWN_METHODS.has(method);
    const span = this.spans.start(known ? method : 'HTTP', SpanKind.CLIENT, this.upstreamParent, {
      'http.request.method': known ? method : '_OTHER',
      'server.address': target.address,
      'server.port': target.port,
      'url.full': `${target.origin}${cut(pathOf(url))}`,
    });
    headers.traceparent = traceparentOf(span);
    this.stateOf(span, headers);
    return new UpstreamSpan(span, reader);
  }

  /**
   * The client's tracestate and baggage headers pass unchanged, unless the upstream's parent is
   * in the trace of `_meta`: then its tracestate (that of another trace than the header's) goes
   * instead, and its baggage when the client sent no baggage header.
   */
  private stateOf(span: Span, headers: Record<string, string | string[]>): void {
    if (!this.fromMeta) return;
    const state = span.spanContext().traceState;
    if (state === undefined) delete headers.tracestate;
    else headers.tracestate = state.serialize();
    if (headers.baggage === undefined && this.metaBaggage !== undefined) headers.baggage = this.metaBaggage;
  }
}

/** Ends the upstream CLIENT span with the response (status, failure), passing everything through. */
class UpstreamSpan implements ResponseReader {
  private status = 0;
  private ended = false;

  constructor(
    private readonly span: Span,
    private readonly inner: ResponseReader | undefined,
  ) {}

  onStart(statusCode: number, headers: OutgoingHttpHeaders): boolean {
    this.status = statusCode;
    this.span.setAttribute('http.response.status_code', statusCode);
    if (statusCode >= 400) this.fail(String(statusCode));
    return this.inner === undefined ? true : this.inner.onStart(statusCode, headers);
  }

  onData(chunk: Buffer): Buffer | undefined {
    return this.inner === undefined ? chunk : this.inner.onData(chunk);
  }

  onEnd(): Buffer | undefined {
    const rest = this.inner?.onEnd();
    this.end();
    return rest;
  }

  onError(kind: UpstreamFailureKind): void {
    this.fail(kind);
    this.inner?.onError(kind);
    this.end();
  }

  onClientGone(): void {
    // A stream the client closes has ended; a request it gives up before the answer is cancelled.
    if (this.status === 0) this.fail('cancelled');
    this.inner?.onClientGone();
    this.end();
  }

  private fail(type: string): void {
    this.span.setAttribute('error.type', type);
    this.span.setStatus({ code: SpanStatusCode.ERROR });
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.span.end();
  }
}
