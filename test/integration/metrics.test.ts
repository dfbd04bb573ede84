import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { findTool } from '../helpers/tools.js';

const promtool = findTool('promtool');
import { REJECTION_REASONS } from '../../src/lib/errors.js';

const SPEC_METRICS = [
  ['mcp_auth_accepted_total', 'counter'],
  ['mcp_auth_rejected_total', 'counter'],
  ['mcp_auth_verify_duration_seconds', 'histogram'],
  ['mcp_auth_upstream_failures_total', 'counter'],
  ['mcp_auth_jwks_refresh_total', 'counter'],
  ['mcp_auth_jwks_keys', 'gauge'],
  ['mcp_auth_jwks_last_success_timestamp_seconds', 'gauge'],
  ['mcp_auth_requests_in_flight', 'gauge'],
] as const;

describe('metrics on the admin port', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  const scrape = async () => (await request(`${sidecar.adminUrl}/metrics`)).body.text();
  const value = (text: string, series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream));
  });
  afterAll(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  it('exports every documented metric with its type, and every reason at 0 from the start', async () => {
    const text = await scrape();
    for (const [name, type] of SPEC_METRICS) expect(text).toContain(`# TYPE ${name} ${type}`);
    for (const reason of REJECTION_REASONS) expect(value(text, `mcp_auth_rejected_total{reason="${reason}"}`)).toBe(0);
    for (const kind of ['connect', 'timeout', 'reset']) expect(value(text, `mcp_auth_upstream_failures_total{kind="${kind}"}`)).toBe(0);
    expect(value(text, 'mcp_auth_accepted_total')).toBe(0);
    expect(text).toContain('process_resident_memory_bytes');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
  });

  it('counts exactly a known mix of accepted and rejected requests', async () => {
    const send = async (authorization?: string, path = '/mcp') => {
      const res = await request(`${sidecar.url}${path}`, { headers: authorization ? { authorization } : {} });
      await res.body.text();
      return res.statusCode;
    };
    const good = `Bearer ${await issuer.mint()}`;
    for (let i = 0; i < 7; i++) expect(await send(good)).toBe(200);
    for (let i = 0; i < 3; i++) expect(await send()).toBe(401);
    for (let i = 0; i < 2; i++) expect(await send(`Bearer ${await issuer.mint({ typ: 'ID' })}`)).toBe(401);
    expect(await send(`Bearer ${await issuer.mint({ exp: Math.floor(Date.now() / 1000) - 3600 })}`)).toBe(401);
    expect(await send(undefined, '/.well-known/oauth-protected-resource')).toBe(200);
    // /metrics and /healthz on the proxy port belong to the upstream: authenticated and forwarded.
    expect(await send(good, '/metrics')).toBe(200);
    expect(await send(undefined, '/healthz')).toBe(401);

    const text = await scrape();
    expect(value(text, 'mcp_auth_accepted_total')).toBe(8);
    expect(value(text, 'mcp_auth_rejected_total{reason="missing_token"}')).toBe(4);
    expect(value(text, 'mcp_auth_rejected_total{reason="wrong_token_type"}')).toBe(2);
    expect(value(text, 'mcp_auth_rejected_total{reason="expired"}')).toBe(1);
    const others = REJECTION_REASONS.filter((r) => !['missing_token', 'wrong_token_type', 'expired'].includes(r));
    for (const reason of others) expect(value(text, `mcp_auth_rejected_total{reason="${reason}"}`)).toBe(0);
    // Timed: the 11 requests whose token was verified, not the 4 without one.
    expect(value(text, 'mcp_auth_verify_duration_seconds_count')).toBe(11);
    expect(value(text, 'mcp_auth_requests_in_flight')).toBe(0);
    expect(upstream.seen.map((s) => s.url)).toEqual([...Array(7).fill('/mcp'), '/metrics']);
  });

  it('has verify-latency buckets from 10 µs to seconds', async () => {
    const text = await scrape();
    for (const le of ['0.00001', '0.0001', '0.001', '0.01', '1'])
      expect(text).toContain(`mcp_auth_verify_duration_seconds_bucket{le="${le}"}`);
  });

  it.skipIf(!promtool)('is accepted by promtool check metrics', async () => {
    const check = (input: string) =>
      new Promise<{ code: number; output: string }>((resolve) => {
        const child = execFile(promtool!, ['check', 'metrics'], (error, stdout, stderr) =>
          resolve({ code: error ? Number(error.code) : 0, output: stdout + stderr }),
        );
        child.stdin!.end(input);
      });
    const text = await scrape();
    // Our own families lint clean.
    const ours =
      text
        .split('\n\n')
        .filter((family) => family.includes('mcp_auth_'))
        .join('\n\n') + '\n';
    expect(await check(ours)).toEqual({ code: 0, output: '' });
    // The whole exposition parses; the only lint notes are prom-client's own default gauges named *_total.
    const whole = await check(text);
    const notes = whole.output.trim().split('\n').filter(Boolean);
    expect(
      notes.every((n) => /^nodejs_active_\w+_total non-counter metrics should not have "_total" suffix$/.test(n)),
      whole.output,
    ).toBe(true);
  });
});
