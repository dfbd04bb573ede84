// The span of one MCP message (a request or notification the client sent), named and attributed
// as OpenTelemetry's MCP semantic conventions say, with its guards' decisions as children. Where
// the conventions are silent: the audit line's names under `mcp_auth.` (outcome, argument names).
// Never an argument value.
//
// Parent: the trace context in the message's `params._meta` (`traceparent`, `tracestate`: MCP
// 2026-07-28 and the conventions) when it carries one, with a link to the request's span (the
// transport's context, as the conventions ask, whether or not the HTTP headers had one); else the
// request's span.

import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Link, type Span } from '@opentelemetry/api';
import { W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import type { Caller, ClientMessage, Decision, Guard } from '../mcp/guard.js';
import type { Outcome } from '../mcp/audit.js';
import { cut, type Spans } from './span.js';

/** Argument names on a span at most, as the audit line. */
const MAX_ARGUMENT_NAMES = 64;

const traceContext = new W3CTraceContextPropagator();
const baggage = new W3CBaggagePropagator();
const metaGetter = {
  get: (meta: Record<string, unknown>, key: string) => {
    const value = meta[key];
    return typeof value === 'string' ? value : undefined;
  },
  keys: (meta: Record<string, unknown>) => Object.keys(meta),
};

/** The trace context a message carries in `params._meta`, when it carries a valid one. */
export function contextFromMeta(message: ClientMessage): Context | undefined {
  const meta = message.params?._meta;
  if (typeof meta !== 'object' || meta === null || typeof (meta as Record<string, unknown>).traceparent !== 'string') return undefined;
  const context = traceContext.extract(ROOT_CONTEXT, meta as Record<string, unknown>, metaGetter);
  return trace.getSpanContext(context) === undefined ? undefined : baggage.extract(context, meta as Record<string, unknown>, metaGetter);
}

/** The `baggage` header value a context from `_meta` carries, re-written by the propagator (never the raw text). */
export function baggageOf(context: Context): string | undefined {
  const carrier: Record<string, string> = {};
  baggage.inject(context, carrier, { set: (target: Record<string, string>, key, value) => (target[key] = value) });
  return carrier.baggage;
}

function argumentNames(args: Readonly<Record<string, unknown>>): string[] {
  const names: string[] = [];
  for (const name in args) {
    if (names.length === MAX_ARGUMENT_NAMES) break;
    names.push(cut(name));
  }
  return names;
}

export interface MessageScope {
  readonly spans: Spans;
  /** The request's span context. */
  readonly request: Context;
  /** HTTP's version on the client's connection (`1.1`, `2`): `network.protocol.version`. */
  readonly httpVersion: string;
  /** The protocol version of the request (MCP-Protocol-Version) or its session; a message's `_meta` says its own. */
  readonly protocolVersion: string | undefined;
  /** Whether a tool name may go into a span name: one the upstream listed (a client cannot invent operation names). */
  readonly listed: (tool: string) => boolean;
  /** The method as a span name: an MCP method, else `other` (as the metrics' label). */
  readonly label: (method: string) => string;
}

export class MessageTrace {
  readonly span: Span;
  readonly context: Context;
  /** The span's ids when it is recorded (the audit line's), and an exemplar's labels. */
  readonly traceId: string | undefined;
  readonly spanId: string | undefined;
  readonly exemplar: { trace_id: string; span_id: string } | undefined;
  /** The trace context `_meta` carried, when it is this span's parent. */
  readonly meta: Context | undefined;

  constructor(
    private readonly spans: Spans,
    scope: MessageScope,
    message: ClientMessage,
    caller: Caller,
  ) {
    const { method } = message;
    const attributes: Attributes = {
      'mcp.method.name': cut(method),
      // Streamable HTTP (and HTTP+SSE) as the conventions record an MCP transport.
      'network.transport': 'tcp',
      'network.protocol.name': 'http',
      'network.protocol.version': scope.httpVersion,
    };
    if (message.id !== undefined) attributes['jsonrpc.request.id'] = cut(String(message.id));
    if (caller.sessionId !== undefined) attributes['mcp.session.id'] = cut(caller.sessionId);
    const version = message.meta?.protocolVersion ?? scope.protocolVersion;
    if (version !== undefined) attributes['mcp.protocol.version'] = cut(version);
    let target: string | undefined;
    if (message.tool !== undefined) {
      attributes['gen_ai.tool.name'] = cut(message.tool);
      attributes['gen_ai.operation.name'] = 'execute_tool';
      if (scope.listed(message.tool)) target = message.tool;
    }
    if (message.prompt !== undefined) attributes['gen_ai.prompt.name'] = cut(message.prompt);
    if (message.resource !== undefined) attributes['mcp.resource.uri'] = cut(message.resource);
    if (message.arguments !== undefined) attributes['mcp_auth.argument_names'] = argumentNames(message.arguments);
    const meta = contextFromMeta(message);
    let parent = scope.request;
    const links: Link[] = [];
    if (meta !== undefined) {
      // The MCP conventions: the message's own context is the parent; the transport's is a link.
      parent = meta;
      this.meta = meta;
      const request = trace.getSpanContext(scope.request);
      if (request !== undefined) links.push({ context: request });
    }
    const name = scope.label(method);
    this.span = this.spans.start(target === undefined ? name : `${name} ${target}`, SpanKind.SERVER, parent, attributes, undefined, links);
    this.context = trace.setSpan(ROOT_CONTEXT, this.span);
    if (this.span.isRecording()) {
      const { traceId, spanId } = this.span.spanContext();
      this.traceId = traceId;
      this.spanId = spanId;
      this.exemplar = { trace_id: traceId, span_id: spanId };
    }
  }

  /** A guard judges the message under a span of its own, which its decision describes (`Guard.describe`). */
  judge(guard: Guard, message: ClientMessage, caller: Caller): Decision | Promise<Decision> {
    if (!this.span.isRecording() || guard.name === undefined) return guard.judge(message, caller);
    const span = this.spans.start(guard.name, SpanKind.INTERNAL, this.context);
    const done = (decision: Decision) => {
      const described = guard.describe?.(decision);
      if (described !== undefined) {
        span.setAttributes(described);
        if (described['error.type'] !== undefined) span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.end();
      return decision;
    };
    const failed = (error: unknown) => {
      span.setAttribute('error.type', '_OTHER');
      span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
      throw error;
    };
    let made: Decision | Promise<Decision>;
    try {
      made = guard.judge(message, caller);
    } catch (error) {
      return failed(error);
    }
    return made instanceof Promise ? made.then(done, failed) : done(made);
  }

  /**
   * The message has ended (McpContext.end): the audit line's outcome; a JSON-RPC error's code as
   * `error.type` and `rpc.response.status_code`, `tool_error` for a tool's own failure (the MCP conventions).
   */
  end(outcome: Outcome, rpcErrorCode: number | undefined): void {
    const span = this.span;
    if (span.isRecording()) {
      const attributes: Attributes = { 'mcp_auth.outcome': outcome };
      let error: string | undefined;
      if (rpcErrorCode !== undefined) {
        error = attributes['rpc.response.status_code'] = String(rpcErrorCode);
      } else if (outcome === 'tool_error' || outcome === 'upstream_error' || outcome === 'cancelled') error = outcome;
      if (error !== undefined) {
        attributes['error.type'] = error;
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.setAttributes(attributes);
    }
    span.end();
  }
}
