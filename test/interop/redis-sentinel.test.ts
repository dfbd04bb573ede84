// Rate limits through a Redis Sentinel group, across a failover: a real primary, a replica and
// three Sentinels (test/helpers/redis-ha.ts), two sidecars (two replicas of the pod) sharing
// them, clients on the official TypeScript MCP SDK. The primary is killed; the Sentinels promote
// the replica; the counts must hold across both sidecars, and what the failover costs (refused
// calls with RATE_LIMIT_ON_REDIS_ERROR=deny, calls counted only per process with allow) is
// measured and printed (docs/rate-limits.md quotes it).

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startMcpServer, type McpTestServer } from '../helpers/mcp-server.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog } from '../helpers/log-capture.js';
import { replicas } from '../helpers/replicas.js';
import { startSentinelGroup, waitFor, type TestSentinelGroup } from '../helpers/redis-ha.js';
import { findTool, freePort } from '../helpers/tools.js';
import { RPC_CODES } from '../../src/lib/errors.js';

const tools = findTool('redis-server') !== undefined && findTool('redis-sentinel') !== undefined;
const ALICE = { sub: 'alice-sub', preferred_username: 'alice' };
const RATE_LIMITED = RPC_CODES.rateLimited;
const LIMIT = 40;
const BEFORE = 6;
const KEY = `mcp-auth:tool-${LIMIT}:{s.alice-sub}:whoami`;

type Result = 'ok' | 'unavailable' | 'limited';

describe.skipIf(!tools)('rate limits through Redis Sentinel, across a failover', { timeout: 90_000 }, () => {
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let group: TestSentinelGroup | undefined;
  const pair = replicas('failover-test');
  const { sidecars, clients, logs } = pair;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer();
  });
  afterAll(async () => {
    await mcp?.close();
    await issuer?.close();
  });
  afterEach(async () => {
    await pair.close();
    await group?.close();
    group = undefined;
  });

  const startTwo = async (env: Record<string, string>) => {
    group = await startSentinelGroup();
    await pair.start(issuer, mcp, {
      REDIS_URL: group.url,
      REDIS_SENTINEL_PASSWORD: group.sentinelPassword,
      REDIS_TIMEOUT_MS: '500',
      RATE_LIMIT_TOOL_PER_MINUTE: String(LIMIT),
      ...env,
    });
    for (const sidecar of sidecars) await pair.connect(issuer, sidecar, ALICE);
    return group;
  };
  const call = (i: number): Promise<Result> =>
    clients[i]!.callTool({ name: 'whoami', arguments: {} }).then(
      () => 'ok',
      (error: unknown) => {
        if (!(error instanceof McpError) || error.code !== RATE_LIMITED) throw error;
        return error.message.includes('rate limit unavailable') ? 'unavailable' : 'limited';
      },
    );
  const backendErrors = async (sidecar: RunningSidecar) =>
    Number(/^mcp_auth_rate_limit_backend_errors_total (\d+)/m.exec(await (await fetch(`${sidecar.adminUrl}/metrics`)).text())?.[1]);
  /** Both sidecars counting in the new master: each logged that the Sentinels named it. */
  const bothMoved = () => logs.every((log) => log.lines().some((l) => String(l.msg).includes('Redis Sentinel named a new master')));
  /** Waits until both sidecars count in the new master, calling `meanwhile` between looks; says what it saw if not. */
  const untilBothMoved = async (g: TestSentinelGroup, ms: number, meanwhile: () => Promise<void> = async () => {}) => {
    try {
      await waitFor('both sidecars on the new master', ms, async () => {
        if (bothMoved()) return true;
        await meanwhile();
        return undefined;
      });
    } catch (error) {
      const seen = {
        master: await g.masterPort().catch((e: unknown) => String(e)),
        sidecars: sidecars.map((s) => s.app.summary().redis),
        lines: logs.map((log) => log.lines().filter((l) => String(l.msg).startsWith('rate limits'))),
      };
      throw new Error(`${(error as Error).message}: ${JSON.stringify(seen)}`);
    }
  };

  /** SENTINEL FAILOVER on the first Sentinel; false while it refuses (another failover in progress). */
  const sentinelFailover = async (g: TestSentinelGroup) => {
    const sentinel = g.sentinel(0);
    try {
      return (await sentinel.call('SENTINEL', 'FAILOVER', g.masterName)) === 'OK';
    } catch {
      return false;
    } finally {
      sentinel.disconnect();
    }
  };

  /** Calls before the kill, spread over both sidecars, and waits until the replica has them. */
  const callBefore = async (g: TestSentinelGroup) => {
    const results: Result[] = [];
    for (let i = 0; i < BEFORE; i++) results.push(await call(i % 2));
    expect(results).toEqual(Array(BEFORE).fill('ok'));
    const replica = g.node(g.replicaPort);
    try {
      await waitFor('the replica holding the count', 5000, async () => ((await replica.get(KEY)) === String(BEFORE) ? true : undefined));
    } finally {
      replica.disconnect();
    }
  };
  /**
   * A call through sidecar i; refused for Redis, waits (bounded) until that sidecar is connected
   * again and counts one reconnect for it, so a reconnect costs one count, not the calls that fit
   * into it on a busy machine.
   */
  const callCountingReconnects = async (i: number, reconnects: number[]): Promise<Result> => {
    const result = await call(i);
    if (result === 'unavailable') {
      reconnects[i]!++;
      await waitFor(`sidecar ${i} connected again`, 10_000, async () =>
        (sidecars[i]!.app.summary().redis as { state?: string }).state === 'connected' ? true : undefined,
      );
    }
    return result;
  };
  /**
   * Each Sentinel announces the new master (+switch-master) when it learns of it, and a sidecar
   * reconnects on each announcement it hears: at most one reconnect per Sentinel.
   */
  const MAX_RECONNECTS = 3;
  /** After the failover, calls until Redis refuses one: the rest of the limit. */
  const callAfter = async () => {
    const results: Result[] = [];
    const reconnects = [0, 0];
    while (results.at(-1) !== 'limited' && results.length < 2 * LIMIT)
      results.push(await callCountingReconnects(results.length % 2, reconnects));
    expect(results.at(-1)).toBe('limited');
    for (const n of reconnects) expect(n).toBeLessThanOrEqual(MAX_RECONNECTS);
    return results;
  };

  it('with RATE_LIMIT_ON_REDIS_ERROR=deny: refuses while no master answers, then the counts made before go on in the promoted replica', async () => {
    const g = await startTwo({ RATE_LIMIT_ON_REDIS_ERROR: 'deny' });
    expect(sidecars[0]!.app.summary().redis).toEqual({
      url: expect.stringMatching(/^redis\+sentinel:\/\/:\*\*\*@127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+\/mcp-limits$/),
      mode: 'sentinel',
      state: 'connected',
      master: `127.0.0.1:${g.primaryPort}`,
    });
    await callBefore(g);

    const killed = performance.now();
    await g.killPrimary();
    // Calls every 50 ms through both sidecars until one is counted again (deny allows nothing else).
    const during: { at: number; result: Result }[] = [];
    await waitFor('a call counted after the failover', 30_000, async () => {
      const result = await call(during.length % 2);
      during.push({ at: performance.now() - killed, result });
      if (result === 'ok') return true;
      await new Promise((resolve) => setTimeout(resolve, 50));
      return undefined;
    });
    await untilBothMoved(g, 10_000);
    const refused = during.filter((d) => d.result === 'unavailable');
    expect(refused.length).toBeGreaterThan(0);
    expect(during.filter((d) => d.result === 'limited')).toEqual([]);
    const window = Math.round(during.at(-1)!.at);
    // The Sentinels' part: promotion of the replica, seen from the test.
    expect(await g.masterPort()).toBe(g.replicaPort);
    process.stdout.write(`Sentinel failover, deny: ${refused.length} calls refused, refusal window ${window} ms after the kill\n`);

    // The first call after counted as the 7th; the rest of the limit, shared, then refusals.
    const after = await callAfter();
    expect(after.filter((r) => r === 'ok')).toHaveLength(LIMIT - BEFORE - 1);
    expect(await g.masterPort()).toBe(g.replicaPort);
    expect(sidecars[1]!.app.summary().redis).toMatchObject({ state: 'connected', master: `127.0.0.1:${g.replicaPort}` });

    // In the sidecar's words: one warning for the outage, then the new master.
    const lines = logs[0]!.lines();
    const warnings = lines.filter((l) => String(l.msg).startsWith('rate limits: Redis does not answer'));
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(warnings.length).toBeLessThanOrEqual(3);
    for (const warning of warnings) {
      expect(warning).toMatchObject({
        level: 40,
        problem: expect.stringMatching(/^(connection_closed|connection_refused|not_connected)$/),
      });
      expect(warning).not.toHaveProperty('detail');
    }
    expect(lines.find((l) => String(l.msg).includes('named a new master'))).toMatchObject({
      master: `127.0.0.1:${g.replicaPort}`,
      previousMaster: `127.0.0.1:${g.primaryPort}`,
    });
    expect(JSON.stringify(lines)).not.toContain('data pass');
    expect(JSON.stringify(lines)).not.toContain(g.sentinelPassword);
  });

  // A planned failover (SENTINEL FAILOVER; a partition is alike) leaves the old primary up: it
  // takes counts until the sidecars leave it (+switch-master), and its demotion throws away those
  // made after the replica's promotion. This measures how many calls that gives on top.
  it('with a planned failover (the old primary alive, made a replica): the counts it took after the promotion are lost', async () => {
    const g = await startTwo({ RATE_LIMIT_ON_REDIS_ERROR: 'deny' });
    await callBefore(g);
    await waitFor('a failover started', 10_000, async () => ((await sentinelFailover(g)) ? true : undefined));
    const started = performance.now();
    // A call every 100 ms through both sidecars until both count in the new master, then up to the limit.
    const results: { at: number; result: Result }[] = [];
    results.push({ at: 0, result: await call(0) });
    await untilBothMoved(g, 30_000, async () => {
      await new Promise((resolve) => setTimeout(resolve, 100));
      results.push({ at: performance.now() - started, result: await call(results.length % 2) });
    });
    const moved = results.length;
    expect(await g.masterPort()).toBe(g.replicaPort);
    const reconnects = [0, 0];
    while (results.at(-1)!.result !== 'limited' && results.length < 2 * LIMIT) {
      results.push({ at: performance.now() - started, result: await callCountingReconnects(results.length % 2, reconnects) });
    }
    // Once both are on the new master the count only goes up: the rest of it, then refusals.
    const after = results.slice(moved).map((r) => r.result);
    expect(after.at(-1)).toBe('limited');
    for (const n of reconnects) expect(n).toBeLessThanOrEqual(MAX_RECONNECTS);
    const ok = results.filter((r) => r.result === 'ok').length;
    const overGrant = ok - (LIMIT - BEFORE);
    // Only calls made before both moved can have been counted where the count was then lost.
    expect(overGrant).toBeGreaterThanOrEqual(0);
    expect(overGrant).toBeLessThanOrEqual(moved);
    const refused = results.filter((r) => r.result === 'unavailable').length;
    process.stdout.write(
      `Sentinel planned failover, deny: +switch-master after ${Math.round(results[moved - 1]!.at)} ms, ${overGrant} calls over the limit, ${refused} refused\n`,
    );
    for (const log of logs)
      for (const line of log.lines().filter((l) => l.level === 40))
        expect(['read_only', 'connection_closed', 'not_connected']).toContain(line.problem);
  });

  it('with RATE_LIMIT_ON_REDIS_ERROR=allow: refuses nothing during the failover; calls then are counted per process only', async () => {
    const g = await startTwo({ RATE_LIMIT_ON_REDIS_ERROR: 'allow' });
    await callBefore(g);

    const killed = performance.now();
    await g.killPrimary();
    const during: Result[] = [];
    await untilBothMoved(g, 30_000, async () => {
      during.push(await call(during.length % 2));
      await new Promise((resolve) => setTimeout(resolve, 50));
    });
    const window = Math.round(performance.now() - killed);
    expect(during.every((r) => r === 'ok')).toBe(true);
    // Each call judged without Redis is one backend error of its sidecar: those are the calls over the shared count.
    const local = (await backendErrors(sidecars[0]!)) + (await backendErrors(sidecars[1]!));
    expect(local).toBeGreaterThan(0);
    expect(local).toBeLessThanOrEqual(during.length);
    process.stdout.write(
      `Sentinel failover, allow: ${local} of ${during.length} calls counted per process only, window ${window} ms after the kill\n`,
    );

    // Redis still holds the 6 made before: every call allowed was counted there, up to the limit,
    // or (a backend error) in its sidecar alone; those came on top.
    const after = await callAfter();
    const allLocal = (await backendErrors(sidecars[0]!)) + (await backendErrors(sidecars[1]!));
    expect(BEFORE + during.length + after.filter((r) => r === 'ok').length - allLocal).toBe(LIMIT);
  });
});

describe.skipIf(!tools)("a Sentinel group set up wrong, in the sidecar's words", { timeout: 60_000 }, () => {
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let group: TestSentinelGroup;
  let sidecar: RunningSidecar | undefined;

  beforeAll(async () => {
    group = await startSentinelGroup();
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer();
  });
  afterAll(async () => {
    await mcp?.close();
    await issuer?.close();
    await group?.close();
  });
  afterEach(async () => {
    await sidecar?.close();
    sidecar = undefined;
  });

  const startWith = async (env: Record<string, string>) => {
    const log = captureLog();
    sidecar = await startSidecar(
      testEnv(issuer, mcp, { LOG_LEVEL: 'info', REDIS_TIMEOUT_MS: '200', RATE_LIMIT_TOOL_PER_MINUTE: '10', REDIS_URL: group.url, ...env }),
      { logger: log.logger },
    );
    const warnings = log.lines().filter((l) => l.level === 40);
    expect(JSON.stringify(log.lines())).not.toContain('data pass');
    expect(JSON.stringify(log.lines())).not.toContain(group.sentinelPassword);
    return { summary: sidecar.app.summary().redis as Record<string, unknown>, warnings };
  };
  const sentinels = () => /@([^/]+)\//.exec(group.url)![1]!;

  it.each([
    ['no REDIS_SENTINEL_PASSWORD', {}, 'sentinel_no_password', /the Sentinels ask for a password: set REDIS_SENTINEL_PASSWORD/],
    ['a wrong REDIS_SENTINEL_PASSWORD', { REDIS_SENTINEL_PASSWORD: 'wrong' }, 'sentinel_wrong_password', /refuse REDIS_SENTINEL_PASSWORD/],
    [
      'a master name the Sentinels do not know',
      { REDIS_SENTINEL_PASSWORD: 'sentinel-pass', REDIS_URL: 'unknown-name' },
      'sentinel_master_unknown',
      /know no master named "nobody": check the name after the hosts/,
    ],
    [
      'a data node listed as a Sentinel',
      { REDIS_SENTINEL_PASSWORD: 'data pass/:@', REDIS_URL: 'data-node' },
      'not_sentinel',
      /lists hosts that are not Sentinels .*not the data nodes/,
    ],
  ] as [string, Record<string, string>, string, RegExp][])('%s', async (_name, given, code, reason) => {
    const env: Record<string, string> = { ...given };
    if (given.REDIS_URL === 'unknown-name') env.REDIS_URL = group.url.replace(/\/mcp-limits$/, '/nobody');
    if (given.REDIS_URL === 'data-node') env.REDIS_URL = group.url.replace(sentinels(), `127.0.0.1:${group.primaryPort}`);
    const { summary, warnings } = await startWith(env);
    expect(summary).toMatchObject({ mode: 'sentinel', state: 'not connected', problem: code, reason: expect.stringMatching(reason) });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ problem: code, reason: expect.stringMatching(reason) });
  });

  it('no Sentinel listening at the hosts of REDIS_URL', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const { summary, warnings } = await startWith({
      REDIS_SENTINEL_PASSWORD: group.sentinelPassword,
      REDIS_URL: `redis+sentinel://127.0.0.1:${a},127.0.0.1:${b}/mcp-limits`,
    });
    const reason = `no Sentinel of REDIS_URL (127.0.0.1:${a}, 127.0.0.1:${b}) answers: check their hosts and ports`;
    expect(summary).toMatchObject({ state: 'not connected', problem: 'sentinels_unreachable', reason: expect.stringContaining(reason) });
    expect(warnings).toHaveLength(1);
  });

  // Last in this group: it takes its data nodes down.
  it('no primary: the master the Sentinels name is down and no replica is left to promote', async () => {
    await group.killReplica();
    await group.killPrimary();
    const { summary, warnings } = await startWith({ REDIS_SENTINEL_PASSWORD: group.sentinelPassword });
    const reason = new RegExp(`refuses connections at 127\\.0\\.0\\.1:${group.primaryPort}, the master the Sentinels name: it is down`);
    expect(summary).toMatchObject({ state: 'not connected', problem: 'connection_refused', reason: expect.stringMatching(reason) });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ problem: 'connection_refused', onRedisError: 'allow' });
    expect(warnings[0]).not.toHaveProperty('detail');
  });
});
