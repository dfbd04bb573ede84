import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { findTool } from '../helpers/tools.js';
import { startScrapedStack, untilPrometheus, type ScrapedStack } from '../helpers/prometheus.js';
import { REJECTION_REASONS } from '../../src/lib/errors.js';

const binary = findTool('prometheus');

describe.skipIf(!binary)('a real Prometheus scraping the admin port', () => {
  let stack: ScrapedStack | undefined;
  beforeAll(async () => {
    stack = await startScrapedStack(binary!);
  }, 30_000);
  afterAll(() => stack?.close());

  it('reads back the accepted and rejected counts through its query API', async () => {
    const { api, issuer, sidecar } = stack!;
    const query = async (expr: string) => {
      const res = await request(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await res.body.json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
      return body.data.result;
    };
    await untilPrometheus(async () => ((await query('up{job="mcp-auth-sidecar"}'))[0]?.value[1] === '1' ? true : undefined));

    const token = await issuer.mint();
    for (let i = 0; i < 5; i++) await (await request(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${token}` } })).body.text();
    for (let i = 0; i < 3; i++) await (await request(`${sidecar.url}/mcp`)).body.text();
    await (await request(`${sidecar.url}/mcp`, { headers: { authorization: 'Bearer x.y.z' } })).body.text();

    const accepted = await untilPrometheus(async () => {
      const [sample] = await query('mcp_auth_accepted_total{job="mcp-auth-sidecar"}');
      return sample?.value[1] === '5' ? sample : undefined;
    });
    expect(accepted.metric.instance).toBe(new URL(sidecar.adminUrl).host);
    const rejected = Object.fromEntries(
      (await query('mcp_auth_rejected_total{job="mcp-auth-sidecar"}')).map((s) => [s.metric.reason, s.value[1]]),
    );
    expect(rejected).toMatchObject({ missing_token: '3', malformed_token: '1', expired: '0', jwks_unavailable: '0' });
    // Every reason is exported from the start, at 0.
    expect(Object.keys(rejected).sort()).toEqual([...REJECTION_REASONS].sort());
  }, 60_000);
});
