import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { testEnv } from '../helpers/sidecar.js';
import { freePort } from '../helpers/tools.js';
import { spawnSidecar, type SidecarProcess } from '../helpers/sidecar-process.js';

const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };

async function occupyPort(): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** No line of Node's own stack trace printing (`    at fn (file:line)`), on either stream. */
function expectNoBareStack(sidecar: SidecarProcess): void {
  expect(sidecar.stderr()).not.toMatch(/^\s+at /m);
  for (const line of sidecar.lines) expect(line, JSON.stringify(line)).not.toHaveProperty('notJson');
}

describe('a start-up that cannot listen', { timeout: 60_000 }, () => {
  let taken: Server;
  let upstream: TestUpstream;
  let deadIssuer: string;
  beforeEach(async () => {
    taken = await occupyPort();
    upstream = await startUpstream();
    // An issuer nobody listens on: the key set's first fetch fails and logs a warning, which
    // sits in the log batch when the listener fails.
    deadIssuer = `http://127.0.0.1:${await freePort()}`;
  });
  afterEach(async () => {
    await new Promise((resolve) => taken.close(resolve));
    await upstream.close();
  });

  it.each(['PORT', 'ADMIN_PORT'])(
    'with %s in use: writes the gathered lines, then one JSON line naming it and the address, exits 1',
    async (variable) => {
      const port = (taken.address() as AddressInfo).port;
      const sidecar = spawnSidecar(
        testEnv({ issuer: deadIssuer } as TestIssuer, upstream, { LOG_LEVEL: 'info', [variable]: String(port) }),
      );
      expect(await sidecar.exited).toBe(1);
      expectNoBareStack(sidecar);
      expect(sidecar.lines.map((l) => l.msg)).toContain('key set refresh failed');
      const last = sidecar.lines.at(-1)!;
      expect(last).toMatchObject({ level: 60, cause: variable, value: String(port), address: `127.0.0.1:${port}`, code: 'EADDRINUSE' });
      expect(last.msg).toBe(`cannot listen on 127.0.0.1:${port}: the address is in use`);
    },
  );

  it('names HOST when the address is not one of this host, even with LOG_LEVEL=silent', async () => {
    const sidecar = spawnSidecar(testEnv({ issuer: deadIssuer } as TestIssuer, upstream, { HOST: '192.0.2.1' }));
    expect(await sidecar.exited).toBe(1);
    expectNoBareStack(sidecar);
    expect(sidecar.lines).toEqual([expect.objectContaining({ level: 60, cause: 'HOST', value: '192.0.2.1', code: 'EADDRNOTAVAIL' })]);
  });
});

describe('a configuration error', { timeout: 60_000 }, () => {
  it('prints the problems for a person on stderr and one JSON line on stdout, exits 1', async () => {
    const sidecar = spawnSidecar({ PORT: 'eighty' });
    expect(await sidecar.exited).toBe(1);
    expect(sidecar.stderr()).toContain('PORT="eighty"');
    expectNoBareStack(sidecar);
    expect(sidecar.lines).toHaveLength(1);
    expect(sidecar.lines[0]).toMatchObject({ level: 60, cause: 'configuration', msg: 'invalid configuration' });
    expect(sidecar.lines[0]!.problems).toContain('PORT="eighty": expected a whole number from 0 to 65535');
  });
});

describe('a running sidecar', { timeout: 60_000 }, () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: SidecarProcess | undefined;
  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
  });
  afterEach(async () => {
    if (sidecar?.child.exitCode === null) sidecar.child.kill('SIGKILL');
    await upstream.close();
    await issuer.close();
  });

  it('logs and ignores SIGHUP, keeps serving, and still drains on SIGTERM (exit 0)', async () => {
    sidecar = spawnSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'info' }));
    const started = await sidecar.logged('mcp-auth-sidecar started');
    sidecar.child.kill('SIGHUP');
    const ignored = await Promise.race([
      sidecar.logged('SIGHUP ignored: configuration comes from the environment (restart to change it); watched files reload on their own'),
      sidecar.exited.then((code) => ({ exited: code })),
    ]);
    expect(ignored).toMatchObject({ signal: 'SIGHUP' });
    const response = await request(`${started.proxyUrl as string}/mcp`, { headers: { authorization: `Bearer ${await issuer.mint()}` } });
    expect(response.statusCode).toBe(200);
    await response.body.text();
    sidecar.child.kill('SIGTERM');
    expect(await sidecar.exited).toBe(0);
    expect(sidecar.lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['draining', 'request', 'stopped']));
  });

  it('says its version when it starts and in mcp_auth_build_info', async () => {
    sidecar = spawnSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'info' }));
    const started = await sidecar.logged('mcp-auth-sidecar started');
    expect(started).toMatchObject({ version, node: process.versions.node });
    const metrics = await (await request(`${started.adminUrl as string}/metrics`)).body.text();
    expect(metrics).toContain('# TYPE mcp_auth_build_info gauge');
    expect(metrics).toContain(`mcp_auth_build_info{version="${version}",node="${process.versions.node}"} 1`);
  });

  describe('the start-up line', () => {
    it("tells the limits in force: the policy file's over the variables, and where they are counted", async () => {
      const policyFile = join(mkdtempSync(join(tmpdir(), 'startup-')), 'policy.yaml');
      writeFileSync(policyFile, 'limits:\n  toolPerMinute: 60\n  concurrentToolCalls: 2\n  tools:\n    query: { perMinute: 10 }\n');
      sidecar = spawnSidecar(
        testEnv(issuer, upstream, {
          LOG_LEVEL: 'info',
          POLICY_FILE: policyFile,
          RATE_LIMIT_USER_PER_MINUTE: '600',
          RATE_LIMIT_TOOL_PER_MINUTE: '5',
        }),
      );
      const started = await sidecar.logged('mcp-auth-sidecar started');
      expect(started.rateLimits).toEqual({
        userPerMinute: 600,
        toolPerMinute: 60,
        concurrentToolCalls: 2,
        tools: { query: 10 },
        counting: 'process',
      });
      // The variables as set would say 5 tools a minute where 60 apply: they are not shown beside.
      expect(started.config).not.toHaveProperty('rateLimitToolPerMinute');
      expect(started.config).toMatchObject({ rateLimitOnRedisError: 'allow', policyFile });
      expect(started).not.toHaveProperty('redis');
    });

    it('says so when REDIS_URL is set but no limit is, so Redis is never asked', async () => {
      sidecar = spawnSidecar(
        testEnv(issuer, upstream, {
          LOG_LEVEL: 'info',
          REDIS_URL: 'redis+sentinel://:s3cret@s1,s2/mymaster',
          REDIS_SENTINEL_PASSWORD: 'sentinel-s3cret',
        }),
      );
      const started = await sidecar.logged('mcp-auth-sidecar started');
      expect(started.rateLimits).toMatchObject({ counting: 'off' });
      expect(started.redis).toEqual({
        url: 'redis+sentinel://:***@s1:26379,s2:26379/mymaster',
        mode: 'sentinel',
        state: 'unused',
        reason: 'no rate limit is set, so no connection',
      });
      expect(started.config).toMatchObject({ redisUrl: 'redis+sentinel://:***@s1:26379,s2:26379/mymaster', redisSentinelPassword: '***' });
      expect(JSON.stringify(sidecar.lines)).not.toContain('s3cret');
    });
  });
});

describe('the command line', { timeout: 60_000 }, () => {
  it('--version prints the package version and exits 0', async () => {
    const sidecar = spawnSidecar({}, ['--version']);
    expect(await sidecar.exited).toBe(0);
    expect(sidecar.lines).toEqual([{ notJson: version }]);
  });

  it('an unknown argument is an error naming it (exit 2), not a start', async () => {
    const sidecar = spawnSidecar({}, ['--verison']);
    expect(await sidecar.exited).toBe(2);
    expect(sidecar.stderr()).toContain('unknown argument "--verison"');
    expect(sidecar.lines).toEqual([]);
  });
});
