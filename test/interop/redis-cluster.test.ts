// Rate limits through a Redis Cluster: three masters started by the test (redis-server in
// cluster mode, slots assigned by redis-cli), two sidecars sharing it. Every key of one user
// must sit in one hash slot (one node, one round trip, no cross-slot script), and the limits
// hold across both sidecars; a master lost is CLUSTERDOWN, said in the sidecar's words; with a
// replica each, a master killed is replaced and the counts go on (docs/rate-limits.md quotes it).

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { Redis, type Cluster } from 'ioredis';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startMcpServer, type McpTestServer } from '../helpers/mcp-server.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog } from '../helpers/log-capture.js';
import { replicas } from '../helpers/replicas.js';
import { startRedisCluster, waitFor, type TestCluster } from '../helpers/redis-ha.js';
import { findTool } from '../helpers/tools.js';
import { RPC_CODES } from '../../src/lib/errors.js';

const tools = findTool('redis-server') !== undefined && findTool('redis-cli') !== undefined;
const ALICE = { sub: 'alice-sub', preferred_username: 'alice' };
const BOB = { sub: 'bob-sub', preferred_username: 'bob' };
const RATE_LIMITED = RPC_CODES.rateLimited;

describe.skipIf(!tools)('rate limits through a Redis Cluster', { timeout: 60_000 }, () => {
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let cluster: TestCluster;
  let probe: Cluster;
  const pair = replicas('cluster-test');
  const { sidecars, logs } = pair;

  beforeAll(async () => {
    cluster = await startRedisCluster();
    probe = cluster.client();
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer();
  });
  afterAll(async () => {
    probe?.disconnect();
    await mcp?.close();
    await issuer?.close();
    await cluster?.close();
  });
  afterEach(async () => {
    await pair.close();
    mcp.release();
  });

  const startTwo = (env: Record<string, string>) => pair.start(issuer, mcp, { REDIS_URL: cluster.url, REDIS_TIMEOUT_MS: '300', ...env });
  const connect = (sidecar: RunningSidecar, claims: Record<string, unknown>) => pair.connect(issuer, sidecar, claims);
  const call = (client: Client, name = 'whoami') =>
    client.callTool({ name, arguments: {} }).then(
      () => 'ok',
      (error: unknown) => (error instanceof McpError && error.code === RATE_LIMITED ? error.message : Promise.reject(error)),
    );
  /** Every key under the prefix, by the node holding it. */
  const keysByNode = async () => {
    const found = new Map<string, string[]>();
    for (const node of probe.nodes('master')) {
      const keys = await node.keys('mcp-auth:*');
      if (keys.length > 0) found.set(`${node.options.host}:${node.options.port}`, keys.sort());
    }
    return found;
  };
  const slotOf = async (key: string) => Number(await probe.call('CLUSTER', 'KEYSLOT', key));

  it('holds the limits across both replicas; every key of one user is in one slot of one node', async () => {
    await startTwo({ RATE_LIMIT_USER_PER_MINUTE: '100', RATE_LIMIT_TOOL_PER_MINUTE: '3', RATE_LIMIT_CONCURRENT_TOOL_CALLS: '2' });
    expect(sidecars[0]!.app.summary().redis).toEqual({
      url: cluster.url,
      mode: 'cluster',
      state: 'connected',
      masters: expect.arrayContaining(cluster.ports.map((p) => `127.0.0.1:${p}`)),
    });
    const [a, b] = [await connect(sidecars[0]!, ALICE), await connect(sidecars[1]!, ALICE)];
    expect([await call(a), await call(b), await call(a)]).toEqual(['ok', 'ok', 'ok']);
    expect(await call(b)).toContain('too many calls of tool "whoami"');

    // A call held open: its in-flight key exists beside the windows, in the same slot.
    const waiting = mcp.waiting.length;
    const held = call(b, 'wait');
    await waitFor('the held call at the server', 5000, async () => (mcp.waiting.length > waiting ? true : undefined));
    await mcp.waiting[waiting]!.started;
    const bob = await connect(sidecars[0]!, BOB);
    expect(await call(bob)).toBe('ok');

    const byNode = await keysByNode();
    const alice = [...byNode.values()].flat().filter((k) => k.includes('{s.alice-sub}'));
    expect(alice).toEqual(
      expect.arrayContaining(['mcp-auth:user:{s.alice-sub}', 'mcp-auth:tool-3:{s.alice-sub}:whoami', 'mcp-auth:inflight:{s.alice-sub}']),
    );
    expect(new Set(await Promise.all(alice.map(slotOf))).size).toBe(1);
    expect([...byNode.values()].filter((keys) => keys.some((k) => k.includes('{s.alice-sub}')))).toHaveLength(1);
    const bobs = [...byNode.values()].flat().filter((k) => k.includes('{s.bob-sub}'));
    expect(bobs.length).toBeGreaterThanOrEqual(2);
    expect(new Set(await Promise.all(bobs.map(slotOf))).size).toBe(1);
    mcp.release();
    expect(await held).toBe('ok');
  });

  it('a redis:// URL naming one Cluster node: MOVED, said as "write redis+cluster://"', async () => {
    const slot = await slotOf('{s.alice-sub}');
    const ranges = (await probe.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const owner = ranges.find(([from, to]) => slot >= from && slot <= to)![2][1];
    const other = cluster.ports.find((p) => p !== owner)!;
    const log = captureLog();
    logs.push(log);
    sidecars.push(
      await startSidecar(
        testEnv(issuer, mcp, {
          LOG_LEVEL: 'info',
          REDIS_URL: `redis://127.0.0.1:${other}`,
          RATE_LIMIT_TOOL_PER_MINUTE: '10',
          RATE_LIMIT_ON_REDIS_ERROR: 'deny',
        }),
        { logger: log.logger },
      ),
    );
    expect(await call(await connect(sidecars[0]!, ALICE))).toContain('rate limit unavailable');
    expect(log.lines().filter((l) => l.level === 40)).toEqual([
      expect.objectContaining({ problem: 'is_cluster', reason: expect.stringContaining('write REDIS_URL as redis+cluster://') }),
    ]);
  });

  // Last: the cluster stays broken.
  it("with a master gone: CLUSTERDOWN, refused with RATE_LIMIT_ON_REDIS_ERROR=deny and said in the sidecar's words", async () => {
    await startTwo({ RATE_LIMIT_TOOL_PER_MINUTE: '100', RATE_LIMIT_ON_REDIS_ERROR: 'deny' });
    const bob = await connect(sidecars[0]!, BOB);
    expect(await call(bob)).toBe('ok');
    // Lose a master that does not hold bob's slot: once the others mark it failed, the whole cluster refuses.
    const bobsNode = [...(await keysByNode())].find(([, keys]) => keys.some((k) => k.includes('{s.bob-sub}')))![0];
    const victim = cluster.ports.findIndex((p) => `127.0.0.1:${p}` !== bobsNode);
    await cluster.kill(victim);
    const refused = await waitFor('CLUSTERDOWN for a slot on a live node', 20_000, async () => {
      const result = await call(bob);
      return logs[0]!.lines().some((l) => l.problem === 'cluster_down') ? result : undefined;
    });
    expect(refused).toContain('rate limit unavailable');
    const warning = logs[0]!.lines().find((l) => l.problem === 'cluster_down')!;
    expect(warning).toMatchObject({
      level: 40,
      msg: 'rate limits: Redis does not answer; RATE_LIMIT_ON_REDIS_ERROR decides until it does',
      reason: expect.stringContaining('the Redis Cluster is down'),
      onRedisError: 'deny',
    });
    expect(warning).not.toHaveProperty('detail');
  });
});

// A Cluster failover: three masters with a replica each; the master holding the user's slot is
// killed, the others promote its replica (cluster-node-timeout 1 s, then the election). The
// counts made before must go on in the promoted replica, shared by both sidecars.
describe.skipIf(!tools)('rate limits through a Redis Cluster, across a failover', { timeout: 90_000 }, () => {
  const LIMIT = 40;
  const BEFORE = 6;
  const KEY = `mcp-auth:tool-${LIMIT}:{s.alice-sub}:whoami`;
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let cluster: TestCluster | undefined;
  const sidecars: RunningSidecar[] = [];
  const clients: Client[] = [];

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer();
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(sidecars.map((s) => s.close()));
    await mcp?.close();
    await issuer?.close();
    await cluster?.close();
  });

  it("with RATE_LIMIT_ON_REDIS_ERROR=deny: refuses while the user's slot has no master, then the counts go on in the promoted replica", async () => {
    cluster = await startRedisCluster({ replicas: 1 });
    for (let i = 0; i < 2; i++) {
      const sidecar = await startSidecar(
        testEnv(issuer, mcp, {
          LOG_LEVEL: 'silent',
          REDIS_URL: cluster.url,
          REDIS_TIMEOUT_MS: '500',
          RATE_LIMIT_TOOL_PER_MINUTE: String(LIMIT),
          RATE_LIMIT_ON_REDIS_ERROR: 'deny',
        }),
      );
      sidecars.push(sidecar);
      const client = new Client({ name: 'cluster-failover-test', version: '1.0.0' });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), {
          requestInit: { headers: { authorization: `Bearer ${await issuer.mint(ALICE)}` } },
        }),
      );
      clients.push(client);
    }
    const call = (i: number) =>
      clients[i]!.callTool({ name: 'whoami', arguments: {} }).then(
        () => 'ok' as const,
        (error: unknown) => {
          if (!(error instanceof McpError) || error.code !== RATE_LIMITED) throw error;
          return error.message.includes('rate limit unavailable') ? ('unavailable' as const) : ('limited' as const);
        },
      );

    for (let i = 0; i < BEFORE; i++) expect(await call(i % 2)).toBe('ok');
    const { master, replicas } = await cluster.nodesFor(KEY);
    expect(replicas).toHaveLength(1);
    // The replica holds the count before its master goes (replication is asynchronous).
    const replica = new Redis({ host: '127.0.0.1', port: replicas[0]!, maxRetriesPerRequest: 0 });
    replica.on('error', () => {});
    try {
      await replica.call('READONLY');
      await waitFor('the replica holding the count', 5000, async () => ((await replica.get(KEY)) === String(BEFORE) ? true : undefined));
    } finally {
      replica.disconnect();
    }

    const killed = performance.now();
    await cluster.killPort(master);
    // Until each sidecar has had a call counted again: each learns the new slot owner on its own.
    const during: { at: number; result: string; sidecar: number }[] = [];
    const counted = () => new Set(during.filter((d) => d.result === 'ok').map((d) => d.sidecar)).size === 2;
    await waitFor('a call counted through each sidecar after the failover', 30_000, async () => {
      const sidecar = during.length % 2;
      during.push({ at: performance.now() - killed, result: await call(sidecar), sidecar });
      return counted() ? true : undefined;
    });
    expect(during.filter((d) => d.result === 'limited')).toEqual([]);
    expect((await cluster.nodesFor(KEY)).master).toBe(replicas[0]);
    const countedDuring = during.filter((d) => d.result === 'ok').length;

    // The rest of the limit, through both sidecars, then refusals: nothing allowed twice, nothing
    // lost. The cluster's view can still move under a sidecar (its slots refreshed again): a call
    // refused then is sent again until counted (bounded), and the refusals are counted.
    let refusedAfter = 0;
    const countedCall = (i: number) =>
      waitFor(`sidecar ${i} counting`, 10_000, async () => {
        const result = await call(i);
        if (result !== 'unavailable') return result;
        refusedAfter++;
        return undefined;
      });
    const after: string[] = [];
    while (after.at(-1) !== 'limited' && after.length < 2 * LIMIT) after.push(await countedCall(after.length % 2));
    expect(after.at(-1)).toBe('limited');
    // Exactly the rest of the limit; a refused call may have been counted (its answer timed out), never allowed.
    const allowed = after.filter((r) => r === 'ok').length;
    expect(allowed).toBeLessThanOrEqual(LIMIT - BEFORE - countedDuring);
    expect(allowed).toBeGreaterThanOrEqual(LIMIT - BEFORE - countedDuring - refusedAfter);
    const refused = during.filter((d) => d.result === 'unavailable').length + refusedAfter;
    process.stdout.write(
      `Cluster failover, deny: ${refused} calls refused (${refusedAfter} after both sidecars counted again), first call counted ${Math.round(during.find((d) => d.result === 'ok')!.at)} ms after the kill\n`,
    );
  });
});
