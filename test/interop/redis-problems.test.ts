// Redis problems in the sidecar's words: a real redis-server set up wrong in each way an
// operator meets (no password, a wrong one, nothing on the port, TLS one side only, a CA not
// given, a replica, a primary short of replicas, a Cluster URL for a plain node). Each shows in the start-up state
// (App.summary, the start-up line's `redis`) and in the one warning line, as a stable code and
// a message naming the variable to check, never the client's raw text or a password.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { Redis } from 'ioredis';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startMcpServer, type McpTestServer } from '../helpers/mcp-server.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/redis-ha.js';
import { findTool, freePort } from '../helpers/tools.js';
import { spawnSidecar, type SidecarProcess } from '../helpers/sidecar-process.js';

const tools = findTool('redis-server') !== undefined && findTool('openssl') !== undefined;
const ALICE = { sub: 'alice-sub', preferred_username: 'alice' };
const PASSWORD = 'pass word/:@';
const WARNING = 'rate limits: Redis not reachable at start-up; RATE_LIMIT_ON_REDIS_ERROR decides until it is';

describe.skipIf(!tools)("Redis problems in the sidecar's words", { timeout: 60_000 }, () => {
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let plain: TestRedis;
  let secured: TestRedis;
  let replica: TestRedis;
  let sidecar: RunningSidecar | undefined;
  let client: Client | undefined;
  let log: CapturedLog;

  beforeAll(async () => {
    [plain, secured, replica] = await Promise.all([startRedis(), startRedis({ password: PASSWORD, tls: true }), startRedis()]);
    const probe = new Redis(replica.url);
    try {
      await probe.replicaof('127.0.0.1', plain.port);
      await waitFor('the replica in sync', 10_000, async () =>
        /master_link_status:up/.test(await probe.info('replication')) ? true : undefined,
      );
    } finally {
      probe.disconnect();
    }
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer();
    // Three servers, certificates and a replica's sync: more than the default hook time on a busy machine.
  }, 60_000);
  afterAll(async () => {
    await mcp?.close();
    await issuer?.close();
    await Promise.all([plain?.close(), secured?.close(), replica?.close()]);
  });
  afterEach(async () => {
    await client?.close();
    await sidecar?.close();
    client = undefined;
    sidecar = undefined;
  });

  /** A sidecar on `url`; one tool call (refused: deny); its start-up state and warning lines. */
  const attempt = async (url: string, env: Record<string, string> = {}) => {
    log = captureLog();
    sidecar = await startSidecar(
      testEnv(issuer, mcp, {
        LOG_LEVEL: 'info',
        REDIS_URL: url,
        REDIS_TIMEOUT_MS: '200',
        RATE_LIMIT_TOOL_PER_MINUTE: '10',
        RATE_LIMIT_ON_REDIS_ERROR: 'deny',
        ...env,
      }),
      { logger: log.logger },
    );
    const summary = sidecar.app.summary().redis as Record<string, unknown>;
    client = new Client({ name: 'problems-test', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${await issuer.mint(ALICE)}` } },
      }),
    );
    const result = await client.callTool({ name: 'whoami', arguments: {} }).then(
      () => 'ok',
      (error: unknown) => (error instanceof McpError ? error.message : Promise.reject(error)),
    );
    const warnings = log.lines().filter((l) => l.level === 40);
    expect(JSON.stringify(log.lines())).not.toContain('pass word');
    return { summary, result, warnings };
  };
  const refusedFor = async (url: string, code: string, reason: RegExp, env: Record<string, string> = {}) => {
    const { summary, result, warnings } = await attempt(url, env);
    expect(summary).toMatchObject({ state: 'not connected', problem: code, reason: expect.stringMatching(reason) });
    expect(summary).not.toHaveProperty('detail');
    expect(result).toContain('rate limit unavailable');
    expect(warnings[0]).toMatchObject({ msg: WARNING, problem: code, reason: expect.stringMatching(reason), onRedisError: 'deny' });
    // One line for the outage, however many times the client retried meanwhile.
    expect(warnings.filter((w) => w.problem === code)).toHaveLength(1);
    return summary;
  };

  it('no password given to a Redis that asks for one', async () => {
    await refusedFor(secured.url.replace(/:[^@/]*@/, ''), 'no_password', /asks for a password and REDIS_URL gives none/, {
      REDIS_CA_FILE: secured.caFile!,
    });
  });

  it('a wrong password: the summary shows the URL with *** only', async () => {
    const summary = await refusedFor(
      secured.url.replace(/:[^@/]*@/, ':wrong@'),
      'wrong_password',
      /refuses REDIS_URL's user name or password/,
      {
        REDIS_CA_FILE: secured.caFile!,
      },
    );
    expect(summary.url).toBe(`rediss://:***@localhost:${secured.port}`);
  });

  it('nothing listening on the port', async () => {
    const port = await freePort();
    await refusedFor(
      `redis://127.0.0.1:${port}`,
      'connection_refused',
      new RegExp(`refuses connections at 127\\.0\\.0\\.1:${port}: check REDIS_URL`),
    );
  });

  it('a TLS certificate signed by a CA not given in REDIS_CA_FILE', async () => {
    await refusedFor(secured.url, 'tls_untrusted', /TLS certificate is not trusted .*set REDIS_CA_FILE/);
  });

  it('TLS asked of a plain port (rediss:// for redis://)', async () => {
    await refusedFor(plain.url.replace('redis://', 'rediss://'), 'connect_timeout', /that the port speaks TLS \(else redis:\/\/\)/);
  });

  it('plain Redis asked of a TLS port (redis:// for rediss://)', async () => {
    await refusedFor(secured.url.replace('rediss://', 'redis://'), 'connection_lost', /whether the port wants TLS \(then rediss:\/\/\)/);
  });

  it('a redis+cluster:// URL for a node not in cluster mode', async () => {
    await refusedFor(plain.url.replace('redis://', 'redis+cluster://'), 'not_cluster', /not in cluster mode: write redis:\/\//);
  });

  it('a replica: connected, then every write refused READONLY', async () => {
    const { summary, result, warnings } = await attempt(replica.url);
    expect(summary).toMatchObject({ state: 'connected', mode: 'single' });
    expect(result).toContain('rate limit unavailable');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({
      msg: 'rate limits: Redis does not answer; RATE_LIMIT_ON_REDIS_ERROR decides until it does',
      problem: 'read_only',
      reason: expect.stringContaining('REDIS_URL names a replica'),
    });
  });

  it('a primary with fewer replicas in sync than min-replicas-to-write: every write refused NOREPLICAS', async () => {
    const primary = new Redis(plain.url);
    try {
      // One replica is in sync; two are asked for.
      await primary.config('SET', 'min-replicas-to-write', '2');
      const { summary, result, warnings } = await attempt(plain.url);
      expect(summary).toMatchObject({ state: 'connected', mode: 'single' });
      expect(result).toContain('rate limit unavailable');
      expect(warnings).toEqual([
        expect.objectContaining({
          msg: 'rate limits: Redis does not answer; RATE_LIMIT_ON_REDIS_ERROR decides until it does',
          problem: 'too_few_replicas',
          reason: expect.stringContaining('min-replicas-to-write'),
        }),
      ]);
    } finally {
      await primary.config('SET', 'min-replicas-to-write', '0');
      primary.disconnect();
    }
  });

  it('the process: its start-up line says connected or what is wrong; nothing raw on either stream', async () => {
    const env = (url: string) =>
      testEnv(issuer, mcp, { LOG_LEVEL: 'info', REDIS_URL: url, REDIS_CA_FILE: secured.caFile!, RATE_LIMIT_USER_PER_MINUTE: '100' });
    const processes: SidecarProcess[] = [spawnSidecar(env(secured.url)), spawnSidecar(env(secured.url.replace(/:[^@/]*@/, ':wrong@')))];
    try {
      const [good, bad] = await Promise.all(processes.map((p) => p.logged('mcp-auth-sidecar started')));
      expect(good!.redis).toEqual({ url: `rediss://:***@localhost:${secured.port}`, mode: 'single', state: 'connected' });
      expect(good!.rateLimits).toMatchObject({ userPerMinute: 100, counting: 'redis' });
      expect(bad!.redis).toMatchObject({ state: 'not connected', problem: 'wrong_password' });
      expect(processes[1]!.lines.find((l) => l.level === 40)).toMatchObject({ msg: WARNING, problem: 'wrong_password' });
      for (const p of processes) {
        expect(p.stderr()).toBe('');
        const text = JSON.stringify(p.lines);
        expect(text).not.toMatch(/WRONGPASS|pass word|ioredis/);
        for (const line of p.lines) expect(line).not.toHaveProperty('notJson');
      }
    } finally {
      for (const p of processes) p.child.kill('SIGKILL');
    }
  });

  it('the start-up state when all is well: connected, the URL without its password', async () => {
    const { summary, result, warnings } = await attempt(secured.url, { REDIS_CA_FILE: secured.caFile! });
    expect(summary).toEqual({ url: `rediss://:***@localhost:${secured.port}`, mode: 'single', state: 'connected' });
    expect(result).toBe('ok');
    expect(warnings).toEqual([]);
  });
});
