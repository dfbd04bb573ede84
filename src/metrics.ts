// The registry and every metric SPEC names. One registry per app, so tests can build many.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { VERSION } from './version.js';
import { HTTP_REFUSAL_REASONS, REJECTION_REASONS, UPSTREAM_FAILURES, type UpstreamFailureKind } from './errors.js';

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
  readonly httpRefused: Counter<'reason'>;
  readonly connectionsEvicted: Counter;
}

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
    rejected: new Counter({ name: 'mcp_auth_rejected_total', help: 'Requests rejected before reaching the upstream, by reason.', labelNames: ['reason'], registers }),
    verifyDuration: new Histogram({ name: 'mcp_auth_verify_duration_seconds', help: 'Time to verify a bearer token.', buckets: VERIFY_BUCKETS, registers }),
    upstreamFailures: new Counter({ name: 'mcp_auth_upstream_failures_total', help: 'Forwarded requests that got no response from the upstream, by kind.', labelNames: ['kind'], registers }),
    jwksRefresh: new Counter({ name: 'mcp_auth_jwks_refresh_total', help: 'Key set fetches, by result.', labelNames: ['result'], registers }),
    jwksKeys: new Gauge({ name: 'mcp_auth_jwks_keys', help: 'Signing keys in the current key set.', registers }),
    jwksLastSuccess: new Gauge({ name: 'mcp_auth_jwks_last_success_timestamp_seconds', help: 'Unix time of the last successful key set fetch.', registers }),
    inFlight: new Gauge({
      name: 'mcp_auth_requests_in_flight', help: 'Requests on the proxy port not yet finished, streams included.', registers,
      collect() {
        this.set(requestsInFlight());
      },
    }),
    verdictCache: new Counter({ name: 'mcp_auth_verdict_cache_total', help: 'Verdict cache lookups, by result (hit: no signature check needed).', labelNames: ['result'], registers }),
    httpRefused: new Counter({ name: 'mcp_auth_http_refused_total', help: 'Requests refused for how they were sent (before any token check), by reason.', labelNames: ['reason'], registers }),
    connectionsEvicted: new Counter({ name: 'mcp_auth_connections_evicted_total', help: 'Connections that never authenticated, closed at the connection limit to make room for a new one.', registers }),
  };
  // Every label value exists from the start, so rate() alerts work before the first event.
  for (const reason of REJECTION_REASONS) metrics.rejected.inc({ reason }, 0);
  for (const kind of Object.keys(UPSTREAM_FAILURES) as UpstreamFailureKind[]) metrics.upstreamFailures.inc({ kind }, 0);
  for (const result of ['success', 'failure']) metrics.jwksRefresh.inc({ result }, 0);
  for (const result of ['hit', 'miss']) metrics.verdictCache.inc({ result }, 0);
  for (const reason of HTTP_REFUSAL_REASONS) metrics.httpRefused.inc({ reason }, 0);
  new Gauge({ name: 'mcp_auth_build_info', help: 'Always 1: the sidecar version and the Node.js version running it.', labelNames: ['version', 'node'], registers })
    .set({ version: VERSION, node: process.versions.node }, 1);
  return metrics;
}
