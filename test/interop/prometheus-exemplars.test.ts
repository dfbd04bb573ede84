import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { findTool, freePort } from '../helpers/tools.js';

// With tracing on, a real Prometheus (exemplar storage on) scrapes the admin port: it asks for
// OpenMetrics, gets the verification histogram's exemplars with the request's trace id, and the
// counters keep their names; a scrape in Prometheus text has no exemplars and passes promtool.

const prometheus = findTool('prometheus');
const promtool = findTool('promtool');

async function until<T>(read: () => Promise<T | undefined>, deadlineMs = 30_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await read().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('Prometheus did not get there before the deadline');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe.skipIf(!prometheus || !promtool)('exemplars for a real Prometheus', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let server: ChildProcess;
  let dir: string;
  let api: string;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' }), {
      spanExporter: new InMemorySpanExporter(),
    });
    dir = mkdtempSync(join(tmpdir(), 'prometheus-'));
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s }',
        'scrape_configs:',
        '  - job_name: mcp-auth-sidecar',
        `    static_configs: [{ targets: ["${new URL(sidecar.adminUrl).host}"] }]`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    server = spawn(
      prometheus!,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--enable-feature=exemplar-storage',
        '--log.level=error',
      ],
      { stdio: 'ignore' },
    );
  }, 30_000);
  afterAll(async () => {
    server?.kill('SIGKILL');
    await sidecar.close();
    await upstream.close();
    await issuer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores the trace id of a verification as an exemplar, and the counters by their names', async () => {
    const traceId = randomBytes(16).toString('hex');
    const token = await issuer.mint();
    const response = await fetch(`${sidecar.url}/mcp`, {
      headers: { authorization: `Bearer ${token}`, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
    });
    expect(response.status).toBe(200);
    await response.text();
    const exemplars = await until(async () => {
      const now = Date.now() / 1000;
      const query = encodeURIComponent('mcp_auth_verify_duration_seconds_bucket');
      const res = await fetch(`${api}/api/v1/query_exemplars?query=${query}&start=${now - 300}&end=${now + 60}`);
      const body = (await res.json()) as { data: { exemplars: { labels: Record<string, string> }[] }[] };
      const found = body.data.flatMap((series) => series.exemplars).filter((e) => e.labels.trace_id === traceId);
      return found.length > 0 ? found : undefined;
    });
    expect(exemplars[0]!.labels.span_id).toMatch(/^[0-9a-f]{16}$/);
    const accepted = await until(async () => {
      const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent('mcp_auth_accepted_total')}`);
      const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
      return body.data.result[0]?.value[1];
    });
    expect(Number(accepted)).toBeGreaterThanOrEqual(1);
  });

  it('answers a Prometheus-text scrape without exemplars, promtool-clean, after OpenMetrics ones', async () => {
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
