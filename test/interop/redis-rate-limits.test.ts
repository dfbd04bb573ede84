import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startMcpServer, type McpTestServer } from '../helpers/mcp-server.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { replicas } from '../helpers/replicas.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { findTool } from '../helpers/tools.js';
import { RPC_CODES } from '../../src/lib/errors.js';
import { configMap, until } from '../helpers/configmap.js';

const redisServer = findTool('redis-server');
const ALICE = { sub: 'alice-sub', preferred_username: 'alice' };
const BOB = { sub: 'bob-sub', preferred_username: 'bob' };
const RATE_LIMITED = RPC_CODES.rateLimited;

// Two sidecars (two real apps, as two replicas of the pod would run them) share one Redis,
// in front of one real MCP server; the clients are the official TypeScript MCP SDK.
describe.skipIf(!redisServer)('rate limits shared across replicas through Redis', () => {
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let redis: TestRedis;
  const pair = replicas('limits-test');
  const { sidecars, logs } = pair;

  beforeAll(async () => {
    redis = await startRedis();
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer();
  });
  afterAll(async () => {
    await mcp?.close();
    await issuer?.close();
    await redis?.close();
  });
  beforeEach(async () => {
    // A fresh Redis per test (it may have been stopped by the one before).
    await redis.stop();
    await redis.start();
  });
  afterEach(async () => {
    await pair.close();
    mcp.release();
  });

  const startTwo = (env: Record<string, string>) => pair.start(issuer, mcp, { REDIS_URL: redis.url, REDIS_TIMEOUT_MS: '200', ...env });
  const connect = (sidecar: RunningSidecar, claims: Record<string, unknown>) => pair.connect(issuer, sidecar, claims);
  /** The call's result, or the JSON-RPC error the client got. */
  const call = (client: Client, name: string) =>
    client.callTool({ name, arguments: name === 'count' ? { n: 1 } : {} }).then(
      () => 'ok' as const,
      (error: unknown) => error,
    );
  const metrics = async (sidecar: RunningSidecar) => (await fetch(`${sidecar.adminUrl}/metrics`)).text();
  const counter = (text: string, name: string) =>
    Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\d+)`, 'm').exec(text)?.[1] ?? 'NaN');

  it('holds a user to N requests a minute in total across both replicas, not 2N; another user is unaffected', async () => {
    await startTwo({ RATE_LIMIT_USER_PER_MINUTE: '6' });
    // Connecting costs each session one request (initialize); the notification is free.
    const [a, b] = [await connect(sidecars[0]!, ALICE), await connect(sidecars[1]!, ALICE)];
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await call(a, 'whoami'), await call(b, 'whoami'));
    expect(results.filter((r) => r === 'ok')).toHaveLength(4);
    const refused = results.filter((r) => r !== 'ok');
    expect(refused).toHaveLength(4);
    for (const error of refused) {
      expect(error).toBeInstanceOf(McpError);
      expect((error as McpError).code).toBe(RATE_LIMITED);
      expect((error as McpError).message).toContain('too many requests from this user');
    }
    const bob = await connect(sidecars[1]!, BOB);
    expect(await call(bob, 'whoami')).toBe('ok');
    // Each replica counted what it refused.
    const refusedByEach = await Promise.all(
      sidecars.map(async (s) => counter(await metrics(s), 'mcp_auth_rate_limited_total{scope="user"}')),
    );
    expect(refusedByEach[0]! + refusedByEach[1]!).toBe(4);
    const [line] = await logs[0]!.waitForAudit((l) => l.outcome === 'limited');
    expect(line).toMatchObject({ method: 'tools/call', tool: 'whoami', user: 'alice', outcome: 'limited', rpcErrorCode: RATE_LIMITED });
  });

  it('answers a request other than a tool call over the limit with 429 JSON and Retry-After', async () => {
    await startTwo({ RATE_LIMIT_USER_PER_MINUTE: '1' });
    await connect(sidecars[0]!, ALICE);
    const token = await issuer.mint(ALICE);
    const res = await request(`${sidecars[1]!.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });
    expect(res.statusCode).toBe(429);
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(await res.body.json()).toEqual({
      error: 'rate_limited',
      error_description: expect.stringContaining('too many requests from this user'),
    });
  });

  it('limits one tool per user across replicas while other tools stay callable in the same session', async () => {
    await startTwo({ RATE_LIMIT_TOOL_PER_MINUTE: '2' });
    const [a, b] = [await connect(sidecars[0]!, ALICE), await connect(sidecars[1]!, ALICE)];
    expect([await call(a, 'whoami'), await call(b, 'whoami')]).toEqual(['ok', 'ok']);
    const refused = await call(a, 'whoami');
    expect((refused as McpError).code).toBe(RATE_LIMITED);
    expect((refused as McpError).message).toContain('too many calls of tool "whoami"');
    expect((refused as McpError).data).toEqual({ retryAfterSeconds: expect.any(Number) });
    expect(((await call(b, 'whoami')) as McpError).code).toBe(RATE_LIMITED);
    // The session is still usable: another tool, and the list.
    expect(await call(a, 'count')).toBe('ok');
    expect((await a.listTools()).tools.length).toBeGreaterThan(0);
    expect(await call(await connect(sidecars[0]!, BOB), 'whoami')).toBe('ok');
    expect(counter(await metrics(sidecars[0]!), 'mcp_auth_rate_limited_total{scope="tool"}')).toBe(1);
  });

  it('holds tool calls in flight per user across replicas, and frees the slot when the call ends', async () => {
    await startTwo({ RATE_LIMIT_CONCURRENT_TOOL_CALLS: '1' });
    const [a, b] = [await connect(sidecars[0]!, ALICE), await connect(sidecars[1]!, ALICE)];
    const waiting = mcp.waiting.length;
    const held = call(a, 'wait');
    while (mcp.waiting.length === waiting) await new Promise((resolve) => setImmediate(resolve));
    await mcp.waiting[waiting]!.started;
    const refused = await call(b, 'whoami');
    expect((refused as McpError).code).toBe(RATE_LIMITED);
    expect((refused as McpError).message).toContain('in flight');
    expect(await call(await connect(sidecars[1]!, BOB), 'whoami')).toBe('ok');
    mcp.release();
    expect(await held).toBe('ok');
    // The slot is given back to Redis when the response has ended: wait (bounded) for the key to go.
    const probe = new Redis(redis.url, { lazyConnect: true });
    await probe.connect();
    try {
      const deadline = Date.now() + 5000;
      while ((await probe.exists('mcp-auth:inflight:{s.alice-sub}')) === 1 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 10));
      expect(await probe.exists('mcp-auth:inflight:{s.alice-sub}')).toBe(0);
    } finally {
      probe.disconnect();
    }
    expect(await call(b, 'whoami')).toBe('ok');
    expect(counter(await metrics(sidecars[1]!), 'mcp_auth_rate_limited_total{scope="concurrency"}')).toBe(1);
  });

  // A stall (a failover, a long pause) is not an outage: the connection stays, commands wait,
  // and Redis runs them when it goes on, after their answers have timed out. A slot taken then
  // must not count against the user for longer than one lease.
  it.each(['allow', 'deny'])(
    'gives back, once a Redis stall ends, the in-flight slots taken during it (RATE_LIMIT_ON_REDIS_ERROR=%s)',
    async (mode) => {
      await startTwo({ RATE_LIMIT_CONCURRENT_TOOL_CALLS: '1', RATE_LIMIT_ON_REDIS_ERROR: mode, RATE_LIMIT_IN_FLIGHT_EXPIRY_SECONDS: '3' });
      const [a, b] = [await connect(sidecars[0]!, ALICE), await connect(sidecars[1]!, ALICE)];
      expect(await call(a, 'whoami')).toBe('ok');
      redis.pause();
      try {
        // Each acquire goes out, waits REDIS_TIMEOUT_MS (200) and the mode decides; Redis holds them.
        for (const client of [a, b, a]) {
          const result = await call(client, 'whoami');
          if (mode === 'allow') expect(result).toBe('ok');
          else expect((result as McpError).message).toContain('rate limit unavailable');
        }
      } finally {
        redis.resume();
      }
      // Redis now runs the acquires it held: none of them may keep a slot past one lease (3 s).
      const resumed = Date.now();
      let result: unknown;
      do result = await call(a, 'whoami');
      while (result !== 'ok' && Date.now() - resumed < 5000 && (await new Promise((resolve) => setTimeout(resolve, 100, true))));
      expect(result).toBe('ok');
      expect(Date.now() - resumed).toBeLessThan(4000);
      expect([await call(a, 'whoami'), await call(b, 'whoami')]).toEqual(['ok', 'ok']);
    },
  );

  it('drops a slot whose holder is gone (a replica that died mid-call) after one lease, not a key lifetime', async () => {
    await startTwo({ RATE_LIMIT_CONCURRENT_TOOL_CALLS: '1', RATE_LIMIT_IN_FLIGHT_EXPIRY_SECONDS: '3' });
    const a = await connect(sidecars[0]!, ALICE);
    const probe = new Redis(redis.url);
    try {
      // A slot as a replica takes it, leased for 3 s by Redis's clock, never renewed nor released.
      const [seconds, micros] = (await probe.time()) as unknown as [string, string];
      await probe.zadd(
        'mcp-auth:inflight:{s.alice-sub}',
        Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) + 3000,
        'dead-replica:1',
      );
      const refused = await call(a, 'whoami');
      expect((refused as McpError).message).toContain('in flight');
      const started = Date.now();
      let result: unknown = refused;
      while (result !== 'ok' && Date.now() - started < 6000) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        result = await call(a, 'whoami');
      }
      expect(result).toBe('ok');
      expect(Date.now() - started).toBeLessThan(4500);
    } finally {
      probe.disconnect();
    }
  });

  it('keeps the slot of a call running longer than a lease, and gives it back when the call ends', async () => {
    await startTwo({ RATE_LIMIT_CONCURRENT_TOOL_CALLS: '1', RATE_LIMIT_IN_FLIGHT_EXPIRY_SECONDS: '3' });
    const [a, b] = [await connect(sidecars[0]!, ALICE), await connect(sidecars[1]!, ALICE)];
    const waiting = mcp.waiting.length;
    const held = call(a, 'wait');
    while (mcp.waiting.length === waiting) await new Promise((resolve) => setImmediate(resolve));
    await mcp.waiting[waiting]!.started;
    // Two leases later the call still counts: its replica renews it.
    await new Promise((resolve) => setTimeout(resolve, 6500));
    expect(((await call(b, 'whoami')) as McpError).message).toContain('in flight');
    mcp.release();
    expect(await held).toBe('ok');
    const probe = new Redis(redis.url);
    try {
      const deadline = Date.now() + 5000;
      while ((await probe.exists('mcp-auth:inflight:{s.alice-sub}')) === 1 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 10));
      expect(await probe.exists('mcp-auth:inflight:{s.alice-sub}')).toBe(0);
    } finally {
      probe.disconnect();
    }
  }, 20_000);

  it('applies a ConfigMap update of limits: with its rules, over RATE_LIMIT_*; a bad section keeps the last good version of both and counts a failure', async () => {
    const ALLOW_ALL = 'rules:\n  - name: everyone\n    effect: allow\n    when: "true"\n';
    const policy = configMap('policy.yaml', `${ALLOW_ALL}limits:\n  tools:\n    whoami: { perMinute: 1 }\n`);
    // RATE_LIMIT_TOOL_PER_MINUTE is the base: every tool the file does not name, in each version.
    await startTwo({ RATE_LIMIT_TOOL_PER_MINUTE: '2', POLICY_FILE: policy.file });
    const [a, b] = [await connect(sidecars[0]!, ALICE), await connect(sidecars[1]!, ALICE)];
    const reloads = (result: string) =>
      Promise.all(sidecars.map(async (s) => counter(await metrics(s), `mcp_auth_policy_reloads_total{result="${result}"}`)));
    const code = (result: unknown) => (result instanceof McpError ? result.code : result);
    expect([await call(a, 'whoami'), code(await call(b, 'whoami'))]).toEqual(['ok', RATE_LIMITED]);

    // whoami unlimited now, fail once a minute (the variable's 2 before); count still the variable's 2.
    policy.publish(`${ALLOW_ALL}limits:\n  tools:\n    whoami: { perMinute: 0 }\n    fail: { perMinute: 1 }\n`);
    await until(async () => (await reloads('success')).every((n) => n === 1), 'both replicas reloading');
    expect([await call(a, 'whoami'), await call(b, 'whoami'), await call(a, 'whoami')]).toEqual(['ok', 'ok', 'ok']);
    expect([await call(a, 'fail'), code(await call(b, 'fail'))]).toEqual(['ok', RATE_LIMITED]);
    expect([await call(a, 'count'), await call(b, 'count'), code(await call(a, 'count'))]).toEqual(['ok', 'ok', RATE_LIMITED]);

    // A bad limits: section (its valid toolPerMinute would free count) beside a rule denying whoami: nothing of it applies.
    policy.publish(
      'rules:\n  - name: nobody-whoami\n    effect: deny\n    when: mcp.tool == "whoami"\nlimits:\n  toolPerMinute: 100\n  tools:\n    fail: { perHour: 1 }\n',
    );
    await until(async () => (await reloads('failure')).every((n) => n === 1), 'both replicas refusing the version');
    expect(String(logs[0]!.lines().find((l) => l.level === 40)?.msg)).toContain('tools.fail: expected { perMinute: N }');
    expect([await call(a, 'whoami'), await call(b, 'whoami')]).toEqual(['ok', 'ok']);
    expect([code(await call(b, 'count')), code(await call(a, 'fail'))]).toEqual([RATE_LIMITED, RATE_LIMITED]);
    expect(await reloads('success')).toEqual([1, 1]);
  });

  it.each([
    { mode: 'allow', expected: 'ok' },
    { mode: 'deny', expected: 'limited' },
  ])(
    'with Redis stopped answers at once as RATE_LIMIT_ON_REDIS_ERROR=$mode says, counts the error, and shares counting again once Redis is back',
    async ({ mode, expected }) => {
      await startTwo({ RATE_LIMIT_TOOL_PER_MINUTE: '3', RATE_LIMIT_ON_REDIS_ERROR: mode });
      const [a, b] = [await connect(sidecars[0]!, ALICE), await connect(sidecars[1]!, ALICE)];
      expect(await call(a, 'whoami')).toBe('ok');
      await redis.stop();
      const started = Date.now();
      const during = await call(a, 'whoami');
      // Bounded: REDIS_TIMEOUT_MS is 200; a hung request would run into the test timeout instead.
      expect(Date.now() - started).toBeLessThan(3000);
      if (expected === 'ok') expect(during).toBe('ok');
      else {
        expect((during as McpError).code).toBe(RATE_LIMITED);
        expect((during as McpError).message).toContain('rate limit unavailable');
      }
      expect(counter(await metrics(sidecars[0]!), 'mcp_auth_rate_limit_backend_errors_total')).toBeGreaterThanOrEqual(1);
      // Not counted as a limit hit: it was the store that failed.
      expect(counter(await metrics(sidecars[0]!), 'mcp_auth_rate_limited_total{scope="tool"}')).toBe(0);

      // Back (empty): both replicas reconnect by themselves; wait (bounded) until a call is counted in Redis.
      await redis.start();
      const probe = new Redis(redis.url);
      try {
        const deadline = Date.now() + 10_000;
        while ((await probe.dbsize()) === 0 && Date.now() < deadline) {
          await call(a, 'count');
          await call(b, 'count');
        }
        await probe.flushall();
      } finally {
        probe.disconnect();
      }
      const results = [];
      for (let i = 0; i < 3; i++) results.push(await call(a, 'whoami'), await call(b, 'whoami'));
      expect(results.filter((r) => r === 'ok')).toHaveLength(3);
    },
  );
});

describe.skipIf(!redisServer)('Redis with a password and TLS', () => {
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let redis: TestRedis;
  let sidecar: RunningSidecar | undefined;
  let client: Client | undefined;

  beforeAll(async () => {
    redis = await startRedis({ password: 'pass word/:@', tls: true });
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer();
  });
  afterAll(async () => {
    await client?.close();
    await sidecar?.close();
    await mcp?.close();
    await issuer?.close();
    await redis?.close();
  });

  it('counts in a rediss:// Redis that asks for a password, trusting REDIS_CA_FILE', async () => {
    expect(redis.url).toMatch(/^rediss:\/\/:pass%20word%2F%3A%40@localhost:\d+$/);
    sidecar = await startSidecar(
      testEnv(issuer, mcp, {
        REDIS_URL: redis.url,
        REDIS_CA_FILE: redis.caFile!,
        RATE_LIMIT_TOOL_PER_MINUTE: '1',
        RATE_LIMIT_ON_REDIS_ERROR: 'deny',
      }),
    );
    const token = await issuer.mint(ALICE);
    client = new Client({ name: 'limits-test', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
    );
    // The first call may come before the TLS handshake is done (deny: refused): wait (bounded) for a counted one.
    const probe = new Redis(redis.url, { tls: { ca: (await import('node:fs')).readFileSync(redis.caFile!) } });
    try {
      const deadline = Date.now() + 10_000;
      let first: unknown;
      do
        first = await client.callTool({ name: 'whoami', arguments: {} }).then(
          () => 'ok',
          (e: unknown) => e,
        );
      while (first !== 'ok' && Date.now() < deadline);
      expect(first).toBe('ok');
      expect(await probe.keys('mcp-auth:tool-1:*')).toEqual(['mcp-auth:tool-1:{s.alice-sub}:whoami']);
      const second = await client.callTool({ name: 'whoami', arguments: {} }).catch((e: unknown) => e);
      expect((second as McpError).message).toContain('too many calls of tool "whoami"');
    } finally {
      probe.disconnect();
    }
  });
});

describe('rate limits without Redis (per process) and from the policy file', () => {
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let sidecar: RunningSidecar | undefined;
  let client: Client | undefined;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer();
  });
  afterEach(async () => {
    await client?.close();
    await sidecar?.close();
    client = undefined;
    sidecar = undefined;
  });
  afterAll(async () => {
    await mcp?.close();
    await issuer?.close();
  });

  it("applies the policy file's limits: section per tool, in memory when REDIS_URL is unset", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'limits-'));
    const policyFile = join(dir, 'policy.yaml');
    // A file of limits only: no rules, so no tool policy, only the limit.
    writeFileSync(policyFile, 'limits:\n  tools:\n    whoami: { perMinute: 1 }\n');
    sidecar = await startSidecar(testEnv(issuer, mcp, { RATE_LIMIT_TOOL_PER_MINUTE: '100', POLICY_FILE: policyFile }));
    client = new Client({ name: 'limits-test', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${await issuer.mint(ALICE)}` } },
      }),
    );
    await client.callTool({ name: 'whoami', arguments: {} });
    const refused = await client.callTool({ name: 'whoami', arguments: {} }).catch((e: unknown) => e);
    expect((refused as McpError).code).toBe(RATE_LIMITED);
    await client.callTool({ name: 'count', arguments: { n: 1 } });
    await client.callTool({ name: 'count', arguments: { n: 1 } });
  });

  it('refuses to start on a bad limits: section, naming POLICY_FILE', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'limits-'));
    const policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, 'limits:\n  tools:\n    whoami: { perHour: 1 }\n');
    const started = startSidecar(testEnv(issuer, mcp, { POLICY_FILE: policyFile }));
    await expect(started).rejects.toMatchObject({ name: 'StartupError', variable: 'POLICY_FILE' });
    await expect(started).rejects.toThrow(/tools\.whoami: expected \{ perMinute: N \}/);
  });

  it('installs no guard when no limit is set: a body no guard could judge is forwarded as before', async () => {
    sidecar = await startSidecar(testEnv(issuer, mcp, { RATE_LIMIT_USER_PER_MINUTE: '0' }));
    const res = await request(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${await issuer.mint(ALICE)}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: 'not json',
    });
    // The MCP server's own answer to a body it cannot parse (a JSON-RPC parse error), not the sidecar's refusal of guarded traffic.
    const body = (await res.body.json()) as Record<string, unknown>;
    expect(body).not.toHaveProperty('error_description');
    expect(body).toMatchObject({ jsonrpc: '2.0', error: { code: -32700 } });
  });
});
