// The registry and every metric the docs name (the names are an interface). One registry per app, so tests can build many.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { VERSION } from '../lib/version.js';
import { HTTP_REFUSAL_REASONS, REJECTION_REASONS, UPSTREAM_FAILURES, type UpstreamFailureKind } from '../lib/errors.js';

export interface Metrics {
  readonly registry: Registry;
  readonly accepted: Counter;
  readonly rejected: Counter<'reason'>;
  readonly verifyDuration: Histogram;
  readonly upstreamFailures: Counter<'kind'>;
  readonly jwksRefresh: Counter<'result'>;
  readonly jwksKeys: Gauge;
  readonly jwksLastSuccess: Gauge;
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
  'invalid_request',
  'forbidden_session',
];
// Tool calls take milliseconds to minutes.
const TOOL_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

// Verification is microseconds on a cached key and tens of milliseconds when it waits on the issuer.
const VERIFY_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5];

/** `requestsInFlight` is read when Prometheus scrapes: the app keeps the count as a plain number. */
export function createMetrics(requestsInFlight: () => number = () => 0): Metrics {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });

  const metrics: Metrics = {
    registry,
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
      registers,
    }),
    upstreamFailures: new Counter({
      name: 'mcp_auth_upstream_failures_total',
      help: 'Forwarded requests that got no response from the upstream, by kind.',
      labelNames: ['kind'],
      registers,
    }),
    jwksRefresh: new Counter({
      name: 'mcp_auth_jwks_refresh_total',
      help: 'Key set fetches, by result.',
      labelNames: ['result'],
      registers,
    }),
    jwksKeys: new Gauge({ name: 'mcp_auth_jwks_keys', help: 'Signing keys in the current key set.', registers }),
    jwksLastSuccess: new Gauge({
      name: 'mcp_auth_jwks_last_success_timestamp_seconds',
      help: 'Unix time of the last successful key set fetch.',
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
  for (const result of ['success', 'failure']) metrics.jwksRefresh.inc({ result }, 0);
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
  new Gauge({
    name: 'mcp_auth_build_info',
    help: 'Always 1: the sidecar version and the Node.js version running it.',
    labelNames: ['version', 'node'],
    registers,
  }).set({ version: VERSION, node: process.versions.node }, 1);
  return metrics;
}
