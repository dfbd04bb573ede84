import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { findTool, freePort } from '../helpers/tools.js';
import { REJECTION_REASONS } from '../../src/lib/errors.js';

const binary = findTool('prometheus');

/** Polls Prometheus until `read` returns a value; Prometheus scrapes on its own clock, so this is bounded polling. */
async function until<T>(read: () => Promise<T | undefined>, deadlineMs = 30_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await read().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('Prometheus did not get there before the deadline');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe.skipIf(!binary)('a real Prometheus scraping the admin port', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let prometheus: ChildProcess;
  let dir: string;
  let api: string;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream));
    dir = mkdtempSync(join(tmpdir(), 'prometheus-'));
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        'scrape_configs:',
        '  - job_name: mcp-auth-sidecar',
        `    static_configs: [{ targets: ["${new URL(sidecar.adminUrl).host}"] }]`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    prometheus = spawn(
      binary!,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=error',
      ],
      { stdio: 'ignore' },
    );
  }, 30_000);
  afterAll(async () => {
    prometheus?.kill('SIGKILL');
    await sidecar.close();
    await upstream.close();
    await issuer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads back the accepted and rejected counts through its query API', async () => {
    const query = async (expr: string) => {
      const res = await request(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await res.body.json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
      return body.data.result;
    };
    await until(async () => ((await query('up{job="mcp-auth-sidecar"}'))[0]?.value[1] === '1' ? true : undefined));

    const token = await issuer.mint();
    for (let i = 0; i < 5; i++) await (await request(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${token}` } })).body.text();
    for (let i = 0; i < 3; i++) await (await request(`${sidecar.url}/mcp`)).body.text();
    await (await request(`${sidecar.url}/mcp`, { headers: { authorization: 'Bearer x.y.z' } })).body.text();

    const accepted = await until(async () => {
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
