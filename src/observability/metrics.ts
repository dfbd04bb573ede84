// The registry and every metric the docs name (the names are an interface). One registry per app, so tests can build many.

import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  type OpenMetricsContentType,
  type RegistryContentType,
} from 'prom-client';
import { VERSION } from '../lib/version.js';
import { HTTP_REFUSAL_REASONS, REJECTION_REASONS, UPSTREAM_FAILURES, type UpstreamFailureKind } from '../lib/errors.js';

export interface Metrics {
  readonly registry: Registry;
  /** Whether the histograms keep exemplars (tracing on): they are then observed with `{ labels, value, exemplarLabels }`. */
  readonly exemplars: boolean;
  readonly accepted: Counter;
  readonly rejected: Counter<'reason'>;
  readonly verifyDuration: Histogram;
  readonly upstreamFailures: Counter<'kind'>;
  readonly jwksRefresh: Counter<'result' | 'issuer'>;
  readonly jwksKeys: Gauge<'issuer'>;
  readonly jwksLastSuccess: Gauge<'issuer'>;
  readonly issuerVerdicts: Counter<'issuer' | 'verdict'>;
  readonly introspection: Counter<'issuer' | 'result'>;
  readonly inFlight: Gauge;
  readonly verdictCache: Counter<'result'>;
  readonly mcpMessages: Counter<'method' | 'outcome'>;
  readonly toolCalls: Counter<'tool' | 'outcome'>;
  readonly toolCallDuration: Histogram<'tool'>;
  readonly policyDecisions: Counter<'decision' | 'method'>;
  readonly policyReloads: Counter<'result'>;
  readonly policyLastReloadSuccessful: Gauge<'file'>;
  readonly rateLimited: Counter<'scope'>;
  readonly rateLimitBackendErrors: Counter;
  readonly headerMismatches: Counter<'header'>;
  readonly subscriptionsOpen: Gauge;
  readonly bodyReadsWaiting: Gauge;
  readonly subscriptionNotifications: Counter<'method'>;
  readonly auditFailures: Counter;
  readonly httpRefused: Counter<'reason'>;
  readonly connectionsEvicted: Counter;
  readonly dpopRedisErrors: Counter;
  readonly tokenExchanges: Counter<'result'>;
}

// MCP outcomes (src/mcp/audit.ts), repeated here so that metrics.ts imports nothing of src/mcp.
const MCP_OUTCOMES = [
  'result',
  'tool_error',
  'rpc_error',
  'denied',
  'limited',
  'upstream_error',
  'cancelled',
  'unknown',
  'header_mismatch',
  'input_required',
  'subscribed',
  'invalid_request',
  'forbidden_session',
];
// The headers a 2026-07-28 request's headers are checked by (src/mcp/request-metadata.ts).
const MISMATCHED_HEADERS = ['mcp-protocol-version', 'mcp-method', 'mcp-name', 'mcp-param'];
// Tool calls take milliseconds to minutes.
const TOOL_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

// Verification is microseconds on a cached key and tens of milliseconds when it waits on the issuer.
const VERIFY_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5];

/** Every series of one trusted issuer at 0, so that rate() alerts work before its first event. */
export function zeroIssuer(metrics: Metrics, issuer: string, introspects: boolean): void {
  for (const result of ['success', 'failure']) metrics.jwksRefresh.inc({ result, issuer }, 0);
  for (const verdict of ['accepted', ...REJECTION_REASONS]) metrics.issuerVerdicts.inc({ issuer, verdict }, 0);
  if (introspects) for (const result of ['active', 'inactive', 'error']) metrics.introspection.inc({ issuer, result }, 0);
}

/** prom-client takes exemplars only on a registry set to OpenMetrics (createScrape serves both formats). */
function openMetricsRegistry(): Registry {
  const registry = new Registry<OpenMetricsContentType>();
  registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  return registry as unknown as Registry;
}

export interface MetricsOptions {
  /** Histograms keep exemplars (a trace id per bucket), shown to scrapes that ask for OpenMetrics: with tracing on. */
  readonly exemplars?: boolean;
}

/** `requestsInFlight` is read when Prometheus scrapes: the app keeps the count as a plain number. */
export function createMetrics(requestsInFlight: () => number = () => 0, { exemplars = false }: MetricsOptions = {}): Metrics {
  const registry = exemplars ? openMetricsRegistry() : new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });

  const metrics: Metrics = {
    registry,
    exemplars,
    accepted: new Counter({ name: 'mcp_auth_accepted_total', help: 'Requests whose token was accepted and forwarded.', registers }),
    rejected: new Counter({
      name: 'mcp_auth_rejected_total',
      help: 'Requests rejected before reaching the upstream, by reason.',
      labelNames: ['reason'],
      registers,
    }),
    verifyDuration: new Histogram({
      name: 'mcp_auth_verify_duration_seconds',
      help: 'Time to verify a bearer token.',
      buckets: VERIFY_BUCKETS,
      enableExemplars: exemplars,
      registers,
    }),
    upstreamFailures: new Counter({
      name: 'mcp_auth_upstream_failures_total',
      help: 'Forwarded requests that got no response from the upstream, by kind.',
      labelNames: ['kind'],
      registers,
    }),
    // Labelled by issuer (only configured ones): each trusted issuer has a key set of its own.
    jwksRefresh: new Counter({
      name: 'mcp_auth_jwks_refresh_total',
      help: 'Key set fetches, by result and issuer.',
      labelNames: ['result', 'issuer'],
      registers,
    }),
    jwksKeys: new Gauge({
      name: 'mcp_auth_jwks_keys',
      help: 'Signing keys in the current key set, by issuer.',
      labelNames: ['issuer'],
      registers,
    }),
    jwksLastSuccess: new Gauge({
      name: 'mcp_auth_jwks_last_success_timestamp_seconds',
      help: 'Unix time of the last successful key set fetch, by issuer.',
      labelNames: ['issuer'],
      registers,
    }),
    issuerVerdicts: new Counter({
      name: 'mcp_auth_issuer_verdicts_total',
      help: 'Verified tokens by the trusted issuer they named and verdict (accepted, or the rejection reason). Tokens naming no trusted issuer are only in mcp_auth_rejected_total.',
      labelNames: ['issuer', 'verdict'],
      registers,
    }),
    introspection: new Counter({
      name: 'mcp_auth_introspection_requests_total',
      help: "Calls to an issuer's token introspection endpoint, by issuer and result (active, inactive, error: no usable answer).",
      labelNames: ['issuer', 'result'],
      registers,
    }),
    inFlight: new Gauge({
      name: 'mcp_auth_requests_in_flight',
      help: 'Requests on the proxy port not yet finished, streams included.',
      registers,
      collect() {
        this.set(requestsInFlight());
      },
    }),
    verdictCache: new Counter({
      name: 'mcp_auth_verdict_cache_total',
      help: 'Verdict cache lookups, by result (hit: no signature check needed).',
      labelNames: ['result'],
      registers,
    }),
    mcpMessages: new Counter({
      name: 'mcp_auth_mcp_messages_total',
      help: 'MCP requests and notifications, by method (MCP method names, else other; unparsed: a body not read) and outcome.',
      labelNames: ['method', 'outcome'],
      registers,
    }),
    toolCalls: new Counter({
      name: 'mcp_auth_tool_calls_total',
      help: 'tools/call requests, by tool (names the upstream listed, else other) and outcome.',
      labelNames: ['tool', 'outcome'],
      registers,
    }),
    toolCallDuration: new Histogram({
      name: 'mcp_auth_tool_call_duration_seconds',
      help: 'Time from a tools/call request to its outcome, by tool.',
      labelNames: ['tool'],
      buckets: TOOL_BUCKETS,
      enableExemplars: exemplars,
      registers,
    }),
    policyDecisions: new Counter({
      name: 'mcp_auth_policy_decisions_total',
      help: 'Tool policy decisions, by decision (allow, deny, would_deny) and method.',
      labelNames: ['decision', 'method'],
      registers,
    }),
    policyReloads: new Counter({
      name: 'mcp_auth_policy_reloads_total',
      help: 'Policy file loads after start-up, by result.',
      labelNames: ['result'],
      registers,
    }),
    // As Prometheus's own prometheus_config_last_reload_successful; labelled by file so that a
    // sidecar without POLICY_FILE exports no series (an unlabelled gauge would read 0).
    policyLastReloadSuccessful: new Gauge({
      name: 'mcp_auth_policy_last_reload_successful',
      help: 'Whether the policy file as it is now is the version in force (1), or its last read or version was refused and an older one runs (0).',
      labelNames: ['file'],
      registers,
    }),
    rateLimited: new Counter({
      name: 'mcp_auth_rate_limited_total',
      help: 'Requests refused by a rate limit, by scope (user, tool, concurrency).',
      labelNames: ['scope'],
      registers,
    }),
    rateLimitBackendErrors: new Counter({
      name: 'mcp_auth_rate_limit_backend_errors_total',
      help: 'Rate limit checks the backend (Redis) could not answer.',
      registers,
    }),
    headerMismatches: new Counter({
      name: 'mcp_auth_mcp_header_mismatches_total',
      help: 'MCP 2026-07-28 requests refused because a header disagreed with the body (or was missing or malformed), by header.',
      labelNames: ['header'],
      registers,
    }),
    subscriptionsOpen: new Gauge({
      name: 'mcp_auth_mcp_subscriptions_open',
      help: 'subscriptions/listen streams open now.',
      registers,
    }),
    bodyReadsWaiting: new Gauge({
      name: 'mcp_auth_mcp_body_reads_waiting',
      help: 'MCP request bodies waiting for their place among the bodies read at once.',
      registers,
    }),
    subscriptionNotifications: new Counter({
      name: 'mcp_auth_mcp_subscription_notifications_total',
      help: 'Notifications the upstream sent on subscriptions/listen streams, by method.',
      labelNames: ['method'],
      registers,
    }),
    auditFailures: new Counter({
      name: 'mcp_auth_audit_failures_total',
      help: 'Audit lines that could not be written whole (written without their arguments, marked auditError).',
      registers,
    }),
    httpRefused: new Counter({
      name: 'mcp_auth_http_refused_total',
      help: 'Requests refused for how they were sent (before any token check), by reason.',
      labelNames: ['reason'],
      registers,
    }),
    connectionsEvicted: new Counter({
      name: 'mcp_auth_connections_evicted_total',
      help: 'Connections that never authenticated, closed at the connection limit to make room for a new one.',
      registers,
    }),
    dpopRedisErrors: new Counter({
      name: 'mcp_auth_dpop_redis_errors_total',
      help: 'DPoP proof checks Redis did not answer: the proof was checked for replay by this replica alone.',
      registers,
    }),
    tokenExchanges: new Counter({
      name: 'mcp_auth_token_exchanges_total',
      help: "Token exchanges at the issuer's token endpoint for the upstream (UPSTREAM_TOKEN=exchange), by result; cached tokens are not counted.",
      labelNames: ['result'],
      registers,
    }),
  };
  // Every label value exists from the start, so rate() alerts work before the first event.
  for (const reason of REJECTION_REASONS) metrics.rejected.inc({ reason }, 0);
  for (const kind of Object.keys(UPSTREAM_FAILURES) as UpstreamFailureKind[]) metrics.upstreamFailures.inc({ kind }, 0);
  for (const result of ['hit', 'miss']) metrics.verdictCache.inc({ result }, 0);
  for (const outcome of MCP_OUTCOMES) {
    metrics.mcpMessages.inc({ method: 'tools/call', outcome }, 0);
    metrics.toolCalls.inc({ tool: 'other', outcome }, 0);
  }
  metrics.toolCallDuration.zero({ tool: 'other' });
  for (const decision of ['allow', 'deny', 'would_deny']) metrics.policyDecisions.inc({ decision, method: 'tools/call' }, 0);
  for (const result of ['success', 'failure']) metrics.policyReloads.inc({ result }, 0);
  for (const scope of ['user', 'tool', 'concurrency']) metrics.rateLimited.inc({ scope }, 0);
  for (const reason of HTTP_REFUSAL_REASONS) metrics.httpRefused.inc({ reason }, 0);
  for (const result of ['success', 'failure']) metrics.tokenExchanges.inc({ result }, 0);
  for (const header of MISMATCHED_HEADERS) metrics.headerMismatches.inc({ header }, 0);
  new Gauge({
    name: 'mcp_auth_build_info',
    help: 'Always 1: the sidecar version and the Node.js version running it.',
    labelNames: ['version', 'node'],
    registers,
  }).set({ version: VERSION, node: process.versions.node }, 1);
  return metrics;
}

/** Tracing's own counter, registered when tracing is on (tracing/export.ts). */
export function createSpansDropped(registry: Registry): Counter<'reason'> {
  const counter = new Counter({
    name: 'mcp_auth_trace_spans_dropped_total',
    help: 'Spans that never reached the collector, by reason (queue_full: more ended spans waiting than OTEL_BSP_MAX_QUEUE_SIZE; export_failed: the collector was down, slow or refused them).',
    labelNames: ['reason'],
    registers: [registry],
  });
  for (const reason of ['queue_full', 'export_failed']) counter.inc({ reason }, 0);
  return counter;
}

export interface Scrape {
  readonly contentType: string;
  readonly body: string;
}

const OPENMETRICS = /application\/openmetrics-text/i;

/**
 * Answers scrapes in Prometheus text, or in OpenMetrics (the one format with exemplars) when the
 * scrape asks for it, as Prometheus does. prom-client writes the format its registry is set to,
 * and renames counters while writing OpenMetrics (drops `_total`, for good): each scrape sets
 * the format it needs and puts the names back, and scrapes take turns.
 */
export function createScrape(prometheus: Registry): (accept: string | undefined) => Promise<Scrape> {
  const registry = prometheus as unknown as Registry<RegistryContentType>;
  const native = registry.contentType;
  let previous: Promise<unknown> = Promise.resolve();
  const scrape = async (contentType: RegistryContentType): Promise<Scrape> => {
    const metrics = registry.getMetricsAsArray() as unknown as { name: string }[];
    const names = metrics.map((metric) => metric.name);
    registry.setContentType(contentType);
    try {
      return { contentType, body: await registry.metrics() };
    } finally {
      registry.setContentType(native);
      metrics.forEach((metric, i) => (metric.name = names[i]!));
    }
  };
  return (accept) => {
    const run = () =>
      scrape(accept !== undefined && OPENMETRICS.test(accept) ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE);
    const result = previous.then(run, run);
    previous = result.catch(() => undefined);
    return result;
  };
}
