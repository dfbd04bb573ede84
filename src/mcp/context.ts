// What every MCP exchange shares: configuration, guards, sessions, the tools the upstream listed
// (the only values the `tool` label takes, and the argument names of their input schemas),
// requests in flight by session and id (so that notifications/cancelled finds its request, and
// an id is never in flight twice in one session), and the one place an ended message is
// recorded: the audit line, the counters, and the guards' settle.

import type { Config } from '../config/config.js';
import type { Metrics } from '../observability/metrics.js';
import type { Caller, ClientMessage, Guard } from './guard.js';
import type { AuditWriter, Outcome } from './audit.js';
import { methodLabel } from './messages.js';
import { Sessions } from './sessions.js';
import { ParamHeaders } from './param-headers.js';
import { goFoldKey } from '../lib/go-fold.js';
import { READ_BUDGET_BYTES, ReadBudget } from './read-budget.js';
import type { MessageTrace } from '../tracing/mcp-trace.js';

/** At most this many tool names become label values (a client cannot grow the label set). */
export const MAX_TOOL_LABELS = 200;
/** Tools whose input schema's property names are remembered, and properties kept per tool. */
const MAX_TOOL_SCHEMAS = 1000;
const MAX_SCHEMA_PROPERTIES = 200;
const MAX_PROPERTY_LENGTH = 256;

/** One client request or notification, from the moment it was read until its outcome. */
export interface Pending {
  readonly message: ClientMessage;
  readonly caller: Caller;
  readonly reqId: string;
  /** The client's X-Request-Id, for the audit line. */
  readonly clientRequestId?: string | undefined;
  readonly startedAt: number;
  readonly bytesIn: number;
  /** Guards that allowed it: each is settled once when it ends. */
  readonly allowedBy: Guard[];
  rule: string | undefined;
  /** Guards that rewrite its result (list filtering); undefined for most. */
  readonly rewriters: readonly Guard[] | undefined;
  /** The message's span, with tracing on. */
  readonly trace?: MessageTrace | undefined;
  /** Key in the in-flight map, for requests of a session. */
  inFlightKey: string | undefined;
  cancelled: boolean;
  ended: boolean;
  /** An input_required result: the kinds of input it asked for. */
  inputRequests?: readonly string[];
  /** A subscriptions/listen stream that opened: the notifications it has carried so far. */
  notifications?: number;
}

export function idKey(id: string | number): string {
  return typeof id === 'number' ? `n${id}` : `s${id}`;
}

export class McpContext {
  readonly sessions = new Sessions();
  /** Bytes of request bodies read at once, across every request (read-budget.ts). */
  readonly readBudget: ReadBudget;
  /** The Mcp-Param-* marks of the tools the upstream listed (MCP 2026-07-28). */
  readonly paramHeaders = new ParamHeaders();
  private readonly tools = new Set<string>();
  /** Per tool listed, its input schema's property names by Go fold key (read-request.ts: argumentProblem). */
  private readonly schemas = new Map<string, ReadonlyMap<string, string>>();
  private readonly inFlight = new Map<string, Pending>();
  readonly rewriting: boolean;

  constructor(
    readonly config: Pick<Config, 'mcpMaxBodyBytes' | 'resourceUrl'>,
    readonly guards: readonly Guard[],
    readonly metrics: Metrics,
    readonly audit: AuditWriter | undefined,
  ) {
    this.rewriting = guards.some((guard) => guard.rewrites !== undefined);
    this.readBudget = new ReadBudget(Math.max(READ_BUDGET_BYTES, config.mcpMaxBodyBytes), (waiting) =>
      metrics.bodyReadsWaiting.set(waiting),
    );
  }

  /** Names of a tools/list result: label values from now on, up to MAX_TOOL_LABELS; and their input schemas' property names. */
  learnTools(result: unknown): void {
    const tools = (result as { tools?: unknown } | undefined)?.tools;
    if (!Array.isArray(tools)) return;
    for (const tool of tools) {
      const name = (tool as { name?: unknown } | null)?.name;
      if (typeof name !== 'string') continue;
      if (this.tools.size < MAX_TOOL_LABELS) this.tools.add(name);
      this.learnSchema(name, (tool as { inputSchema?: { properties?: unknown } }).inputSchema?.properties);
    }
  }

  private learnSchema(tool: string, properties: unknown): void {
    if (typeof properties !== 'object' || properties === null || tool.length > MAX_PROPERTY_LENGTH) return;
    const folds = new Map<string, string>();
    for (const property in properties) {
      if (folds.size === MAX_SCHEMA_PROPERTIES) break;
      if (property.length <= MAX_PROPERTY_LENGTH) folds.set(goFoldKey(property), property);
    }
    this.schemas.delete(tool);
    if (this.schemas.size >= MAX_TOOL_SCHEMAS) this.schemas.delete(this.schemas.keys().next().value!);
    this.schemas.set(tool, folds);
  }

  /** A listed tool's input schema properties, by Go fold key; undefined for a tool never listed. */
  schemaOf(tool: string): ReadonlyMap<string, string> | undefined {
    return this.schemas.get(tool);
  }

  toolLabel(tool: string | undefined): string {
    return tool !== undefined && this.tools.has(tool) ? tool : 'other';
  }

  /**
   * Registers the requests of one body as in flight in their session, all or none: false when
   * one of their ids already is (the server would answer both on one stream, and a reply could
   * be matched to the wrong request).
   */
  reserve(pendings: readonly Pending[]): boolean {
    for (const pending of pendings) {
      const key = this.inFlightKey(pending);
      if (key !== undefined && this.inFlight.has(key)) return false;
    }
    for (const pending of pendings) {
      const key = this.inFlightKey(pending);
      if (key === undefined) continue;
      pending.inFlightKey = key;
      this.inFlight.set(key, pending);
    }
    return true;
  }

  private inFlightKey(pending: Pending): string | undefined {
    const { sessionId } = pending.caller;
    const { id } = pending.message;
    return sessionId === undefined || id === undefined ? undefined : `${sessionId}\n${idKey(id)}`;
  }

  /** notifications/cancelled: the request it names, in the same session, ends as cancelled. */
  cancel(sessionId: string | undefined, requestId: unknown): void {
    if (sessionId === undefined || (typeof requestId !== 'string' && typeof requestId !== 'number')) return;
    const pending = this.inFlight.get(`${sessionId}\n${idKey(requestId)}`);
    if (pending !== undefined) pending.cancelled = true;
  }

  /**
   * The one place a message read from a request body ends: guards settled, counters, audit line.
   * Once per message: a second end is ignored.
   */
  end(pending: Pending, outcome: Outcome, rpcErrorCode: number | undefined, bytesOut: number, sessionId = pending.caller.sessionId): void {
    if (pending.ended) return;
    pending.ended = true;
    if (pending.inFlightKey !== undefined && this.inFlight.get(pending.inFlightKey) === pending) this.inFlight.delete(pending.inFlightKey);
    if (pending.cancelled && (outcome === 'upstream_error' || outcome === 'unknown' || outcome === 'result')) outcome = 'cancelled';
    const { message, caller, startedAt } = pending;
    for (const guard of pending.allowedBy) {
      try {
        guard.settle?.(message, caller);
      } catch {
        // A guard's bookkeeping must not break the response; its own tests cover it.
      }
    }
    const seconds = (performance.now() - startedAt) / 1000;
    const { metrics } = this;
    if (pending.notifications !== undefined) metrics.subscriptionsOpen.dec();
    const trace = pending.trace;
    trace?.end(outcome, rpcErrorCode);
    metrics.mcpMessages.inc({ method: methodLabel(message.method), outcome });
    if (message.method === 'tools/call') {
      const tool = this.toolLabel(message.tool);
      metrics.toolCalls.inc({ tool, outcome });
      // With tracing, the histogram keeps exemplars: the call's trace.
      // (prom-client types exemplar labels with the metric's label names.)
      if (metrics.exemplars) {
        const exemplarLabels = (trace?.exemplar ?? {}) as Record<'tool', string>;
        metrics.toolCallDuration.observe({ labels: { tool }, value: seconds, exemplarLabels });
      } else metrics.toolCallDuration.observe({ tool }, seconds);
    }
    this.write(pending, outcome, rpcErrorCode, bytesOut, sessionId, seconds);
  }

  /**
   * A subscriptions/listen stream opened (the upstream answered with an event stream): its first
   * audit line, outcome `subscribed`; the second comes when it ends. Counted as open meanwhile.
   */
  opened(pending: Pending, bytesOut: number): void {
    if (pending.ended || pending.notifications !== undefined) return;
    pending.notifications = 0;
    this.metrics.subscriptionsOpen.inc();
    this.write(pending, 'subscribed', undefined, bytesOut, pending.caller.sessionId, (performance.now() - pending.startedAt) / 1000);
  }

  private write(
    pending: Pending,
    outcome: Outcome,
    rpcErrorCode: number | undefined,
    bytesOut: number,
    sessionId: string | undefined,
    seconds: number,
  ): void {
    if (this.audit === undefined) return;
    const { message, caller } = pending;
    const session = this.sessions.get(sessionId);
    // A 2026-07-28 request says in its _meta what initialize said for a session.
    const meta = message.meta;
    this.audit({
      reqId: pending.reqId,
      clientRequestId: pending.clientRequestId,
      user: caller.identity.user,
      subject: caller.identity.subject,
      binding: caller.identity.jkt === undefined ? 'bearer' : 'dpop',
      issuer: caller.identity.issuer,
      sessionId,
      client: session?.client ?? meta?.client,
      protocolVersion: session?.protocolVersion ?? meta?.protocolVersion ?? caller.protocolVersion,
      method: message.method,
      tool: message.tool,
      prompt: message.prompt,
      resource: message.resource,
      arguments: message.arguments,
      argumentsText: message.argumentsText,
      rpcId: message.id,
      // The message's span when tracing recorded one, else the client's trace id from _meta.
      traceId: pending.trace?.traceId ?? meta?.traceId,
      spanId: pending.trace?.spanId,
      inputResponses: message.inputResponses,
      inputRequests: pending.inputRequests,
      notifications: outcome === 'subscribed' ? undefined : pending.notifications,
      outcome,
      rpcErrorCode,
      policyRule: pending.rule,
      durationMs: Math.round(seconds * 1_000_000) / 1000,
      bytesIn: pending.bytesIn,
      bytesOut,
    });
  }
}
