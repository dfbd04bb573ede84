import { afterEach, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { RemoteKeySet } from '../../src/auth/keyset.js';
import { createLogger } from '../../src/observability/log.js';

async function status(sidecar: RunningSidecar, token: string): Promise<[number, string | undefined]> {
  const res = await request(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${token}` } });
  const body = (await res.body.json()) as { reason?: string };
  return [res.statusCode, body.reason];
}

async function metric(sidecar: RunningSidecar, line: RegExp): Promise<number> {
  const text = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
  const match = new RegExp(`^${line.source} (\\S+)$`, 'm').exec(text);
  return Number(match?.[1]);
}

/** A key set series of one issuer (each trusted issuer has its own). */
function jwksMetric(name: string, issuerUrl: string, labels = ''): RegExp {
  return new RegExp(`${name}\\{${labels}issuer="${issuerUrl.replace(/[.]/g, '\\.')}"\\}`);
}

/** Polls until `check` is true; fails after `deadlineMs`. For outcomes driven by the sidecar's own retry timers. */
async function eventually(check: () => Promise<boolean>, deadlineMs = 10_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met before the deadline');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('key set lifecycle', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar | undefined;

  async function start(env: Record<string, string> = {}, options: Parameters<typeof startSidecar>[1] = {}) {
    sidecar = await startSidecar(testEnv(issuer, upstream, env), options);
    return sidecar;
  }
  async function setup() {
    issuer = await startIssuer();
    await issuer.addKey('RS256', { kid: 'key-a' });
    upstream = await startUpstream();
  }
  afterEach(async () => {
    await sidecar?.close();
    sidecar = undefined;
    await upstream.close();
    await issuer.close();
  });

  it('accepts a key rotated in by the issuer within one request', async () => {
    await setup();
    const s = await start();
    const fetches = issuer.requests.jwks;
    const keyB = await issuer.addKey('ES256', { kid: 'key-b' });
    expect(await status(s, await issuer.mint({}, { key: keyB }))).toEqual([200, undefined]);
    expect(issuer.requests.jwks).toBe(fetches + 1);
    expect(await metric(s, jwksMetric('mcp_auth_jwks_keys', issuer.issuer))).toBe(2);
  });

  it('100 concurrent requests with an unknown kid cause one fetch per cooldown', async () => {
    await setup();
    const s = await start();
    const fetches = issuer.requests.jwks;
    const token = await issuer.mint({}, { header: { kid: 'not-there' } });
    const results = await Promise.all(Array.from({ length: 100 }, () => status(s, token)));
    expect(new Set(results.map(([code, reason]) => `${code} ${reason}`))).toEqual(new Set(['401 unknown_key']));
    expect(issuer.requests.jwks).toBe(fetches + 1);
    // Still within the cooldown: another miss does not reach the issuer.
    await status(s, token);
    expect(issuer.requests.jwks).toBe(fetches + 1);
  });

  it('keeps accepting valid tokens when the issuer goes down after start, counting the failed refreshes', async () => {
    await setup();
    const s = await start();
    const keys = s.app.keys as RemoteKeySet;
    for (const mode of ['refuse', 'status-503', 'garbage'] as const) {
      issuer.mode = mode;
      await expect(keys.refresh()).rejects.toThrow();
      expect(await status(s, await issuer.mint())).toEqual([200, undefined]);
    }
    expect(await metric(s, jwksMetric('mcp_auth_jwks_refresh_total', issuer.issuer, 'result="failure",'))).toBe(3);
    expect(await metric(s, jwksMetric('mcp_auth_jwks_refresh_total', issuer.issuer, 'result="success",'))).toBe(1);
    expect((await request(`${s.adminUrl}/readyz`)).statusCode).toBe(200);
  });

  it('answers 503 and is not ready while the issuer is down at start, then recovers by itself', async () => {
    await setup();
    issuer.mode = 'status-503';
    const s = await start();
    expect(await status(s, await issuer.mint())).toEqual([503, 'jwks_unavailable']);
    const ready = await request(`${s.adminUrl}/readyz`);
    expect(ready.statusCode).toBe(503);
    expect(JSON.stringify(await ready.body.json())).toContain('no key set loaded');
    issuer.mode = 'ok';
    // The sidecar retries with backoff (1 s, 2 s, …) on its own.
    await eventually(async () => (await request(`${s.adminUrl}/readyz`)).statusCode === 200);
    expect(await status(s, await issuer.mint())).toEqual([200, undefined]);
  });

  it('refuses a key dropped from the set after the next refresh', async () => {
    await setup();
    const s = await start();
    const keyB = await issuer.addKey('RS256', { kid: 'key-b' });
    await (s.app.keys as RemoteKeySet).refresh();
    const tokenA = await issuer.mint();
    expect(await status(s, tokenA)).toEqual([200, undefined]);
    issuer.removeKey('key-a');
    await (s.app.keys as RemoteKeySet).refresh();
    expect(await status(s, tokenA)).toEqual([401, 'unknown_key']);
    expect(await status(s, await issuer.mint({}, { key: keyB }))).toEqual([200, undefined]);
  });

  it('answers 503 once the last good key set is older than JWKS_MAX_STALE_SECONDS', async () => {
    await setup();
    let clock = Date.now();
    const s = await start({ JWKS_MAX_STALE_SECONDS: '60' }, { now: () => clock });
    issuer.mode = 'status-503';
    clock += 59_000;
    expect(await status(s, await issuer.mint())).toEqual([200, undefined]);
    clock += 2_000;
    expect(await status(s, await issuer.mint())).toEqual([503, 'jwks_unavailable']);
    const ready = await request(`${s.adminUrl}/readyz`);
    expect(ready.statusCode).toBe(503);
    expect(JSON.stringify(await ready.body.json())).toContain('JWKS_MAX_STALE_SECONDS');
  });

  it('bounds fetches: a hanging issuer times out, a 50 MB body is refused, and the good set keeps serving', async () => {
    await setup();
    const lines: string[] = [];
    const logger = createLogger(
      'info',
      new Writable({
        write(chunk, _enc, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    );
    const keys = new RemoteKeySet({
      issuer: issuer.issuer,
      jwksUri: undefined,
      refreshMs: 300_000,
      cooldownMs: 30_000,
      maxStaleMs: 86_400_000,
      logger,
      fetchTimeoutMs: 300,
    });
    const s = await start({}, { keys, logger });
    issuer.mode = 'hang';
    await expect(keys.refresh()).rejects.toThrow();
    issuer.mode = 'huge';
    await expect(keys.refresh()).rejects.toThrow(/exceeds/);
    expect(await status(s, await issuer.mint())).toEqual([200, undefined]);
    const warnings = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level === 40);
    expect(warnings.map((w) => w.msg)).toEqual(['key set refresh failed', 'key set refresh failed']);
  });

  it('never replaces a good set with one that has no usable signing key', async () => {
    await setup();
    const s = await start();
    issuer.removeKey('key-a'); // leaves only Keycloak's encryption key
    await expect((s.app.keys as RemoteKeySet).refresh()).rejects.toThrow(/no usable signing key/);
    expect(await status(s, await issuer.mint())).toEqual([200, undefined]);
  });

  it('checks the issuer named by discovery, and follows no redirect', async () => {
    await setup();
    const redirector = createServer((_req, res) => res.writeHead(302, { location: issuer.jwksUri }).end());
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    try {
      const s = await start({ OIDC_ISSUER: `${issuer.issuer}/` });
      expect(s.app.keys.status().loaded).toBe(false);
      await s.close();
      const viaRedirect = await start({ OIDC_JWKS_URI: `http://127.0.0.1:${(redirector.address() as AddressInfo).port}/certs` });
      expect(viaRedirect.app.keys.status().loaded).toBe(false);
    } finally {
      redirector.close();
    }
  });

  it('exports key set metrics', async () => {
    await setup();
    const before = Date.now() / 1000;
    const s = await start();
    expect(await metric(s, jwksMetric('mcp_auth_jwks_keys', issuer.issuer))).toBe(1);
    expect(await metric(s, jwksMetric('mcp_auth_jwks_refresh_total', issuer.issuer, 'result="success",'))).toBe(1);
    expect(await metric(s, jwksMetric('mcp_auth_jwks_refresh_total', issuer.issuer, 'result="failure",'))).toBe(0);
    expect(await metric(s, jwksMetric('mcp_auth_jwks_last_success_timestamp_seconds', issuer.issuer))).toBeGreaterThanOrEqual(
      Math.floor(before),
    );
  });
});

/** TCP connections of this machine still trying to reach `port` (state SYN_SENT in /proc/net/tcp). */
function connectsPendingTo(port: number): number {
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .filter((line) => {
      const [, , remote, state] = line.trim().split(/\s+/);
      return remote !== undefined && parseInt(remote.split(':')[1]!, 16) === port && state === '02';
    }).length;
}

describe('key set fetches', () => {
  it('gives up a connection the issuer never completes with the fetch, not 10 s later', async () => {
    // An issuer that drops packets: a listener whose process is stopped, so it never accepts,
    // and whose backlog of one (two queued connections) is taken; the kernel drops further SYNs.
    const listener = spawn(
      process.execPath,
      [
        '-e',
        "require('node:net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, function () { console.log(this.address().port) })",
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const fillers: Socket[] = [];
    let keys: RemoteKeySet | undefined;
    try {
      const [line] = (await once(listener.stdout!, 'data')) as [Buffer];
      const port = Number(String(line).trim());
      listener.kill('SIGSTOP');
      await eventually(async () => readFileSync(`/proc/${listener.pid}/stat`, 'utf8').split(') ')[1]!.startsWith('T'), 5_000);
      for (let i = 0; i < 2; i++) {
        const filler = connect(port, '127.0.0.1');
        fillers.push(filler);
        await once(filler, 'connect');
      }
      keys = new RemoteKeySet({
        issuer: `http://127.0.0.1:${port}/realms/coder`,
        jwksUri: `http://127.0.0.1:${port}/certs`,
        refreshMs: 300_000,
        cooldownMs: 30_000,
        maxStaleMs: 86_400_000,
        logger: createLogger('silent'),
        fetchTimeoutMs: 300,
      });
      await expect(keys.refresh()).rejects.toThrow(/took longer than 300 ms/);
      // The scenario holds: the fetch gave up while its connection was still being attempted.
      expect(connectsPendingTo(port)).toBe(1);
      // undici's own connect timeout is 10 s; the fetch's deadline applies (on undici's 0.5 s timer tick).
      await eventually(async () => connectsPendingTo(port) === 0, 3_000);
    } finally {
      keys?.close();
      for (const filler of fillers) filler.destroy();
      listener.kill('SIGKILL');
    }
  });
});
