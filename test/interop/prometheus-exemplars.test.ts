import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { findTool } from '../helpers/tools.js';
import { startScrapedStack, untilPrometheus, type ScrapedStack } from '../helpers/prometheus.js';

// With tracing on, a real Prometheus (exemplar storage on) scrapes the admin port: it asks for
// OpenMetrics, gets the verification histogram's exemplars with the request's trace id, and the
// counters keep their names; a scrape in Prometheus text has no exemplars and passes promtool.

const prometheus = findTool('prometheus');
const promtool = findTool('promtool');

describe.skipIf(!prometheus || !promtool)('exemplars for a real Prometheus', () => {
  let stack: ScrapedStack | undefined;
  beforeAll(async () => {
    stack = await startScrapedStack(prometheus!, {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' },
      options: { spanExporter: new InMemorySpanExporter() },
      exemplars: true,
    });
  }, 30_000);
  afterAll(() => stack?.close());

  it('stores the trace id of a verification as an exemplar, and the counters by their names', async () => {
    const { api, issuer, sidecar } = stack!;
    const traceId = randomBytes(16).toString('hex');
    const token = await issuer.mint();
    const response = await fetch(`${sidecar.url}/mcp`, {
      headers: { authorization: `Bearer ${token}`, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
    });
    expect(response.status).toBe(200);
    await response.text();
    const exemplars = await untilPrometheus(async () => {
      const now = Date.now() / 1000;
      const query = encodeURIComponent('mcp_auth_verify_duration_seconds_bucket');
      const res = await fetch(`${api}/api/v1/query_exemplars?query=${query}&start=${now - 300}&end=${now + 60}`);
      const body = (await res.json()) as { data: { exemplars: { labels: Record<string, string> }[] }[] };
      const found = body.data.flatMap((series) => series.exemplars).filter((e) => e.labels.trace_id === traceId);
      return found.length > 0 ? found : undefined;
    });
    expect(exemplars[0]!.labels.span_id).toMatch(/^[0-9a-f]{16}$/);
    const accepted = await untilPrometheus(async () => {
      const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent('mcp_auth_accepted_total')}`);
      const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
      return body.data.result[0]?.value[1];
    });
    expect(Number(accepted)).toBeGreaterThanOrEqual(1);
  });

  it('answers a Prometheus-text scrape without exemplars, promtool-clean, after OpenMetrics ones', async () => {
    const { sidecar } = stack!;
    const open = await fetch(`${sidecar.adminUrl}/metrics`, { headers: { accept: 'application/openmetrics-text; version=1.0.0' } });
    expect(open.headers.get('content-type')).toMatch(/^application\/openmetrics-text/);
    expect(await open.text()).toMatch(/# EOF\n$/);
    const plain = await fetch(`${sidecar.adminUrl}/metrics`);
    expect(plain.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await plain.text();
    expect(text).toContain('# TYPE mcp_auth_accepted_total counter');
    expect(text).not.toContain('# {');
    const ours =
      text
        .split('\n\n')
        .filter((family) => family.includes('mcp_auth_'))
        .join('\n\n') + '\n';
    const checked = await new Promise<{ code: number; output: string }>((resolve) => {
      const child = spawn(promtool!, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.once('close', (code) => resolve({ code: code ?? -1, output }));
      child.stdin.end(ours);
    });
    expect(checked).toEqual({ code: 0, output: '' });
  });
});
