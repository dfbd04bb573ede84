// Redis with high availability, started by the tests on free loopback ports: a Sentinel group
// (a primary, a replica, three Sentinels: Debian's redis-server and redis-sentinel) and a Redis
// Cluster (three masters, with or without a replica each, redis-server in cluster mode, slots
// assigned with redis-cli). No
// persistence; every wait is bounded; close() stops every process and removes its files.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort } from './tools.js';

const READY_TIMEOUT_MS = 10_000;
const run = promisify(execFile);

/** One redis-server or redis-sentinel process, ready when its log says `ready`. */
interface Server {
  readonly port: number;
  /** SIGKILL: gone at once, as a crashed node or a lost machine. */
  kill(): Promise<void>;
  alive(): boolean;
  stop(): Promise<void>;
}

function startServer(command: string, args: string[], port: number, ready: RegExp): Promise<Server> {
  return new Promise((resolve, reject) => {
    const proc: ChildProcess = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const exited = new Promise<void>((done) => proc.once('exit', () => done()));
    const end = async (signal: NodeJS.Signals) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      proc.kill(signal);
      await exited;
      clearTimeout(timer);
    };
    const timer = setTimeout(
      () => fail(new Error(`${command} on ${port} not ready within ${READY_TIMEOUT_MS} ms:\n${output}`)),
      READY_TIMEOUT_MS,
    );
    const fail = (error: Error) => {
      clearTimeout(timer);
      proc.kill('SIGKILL');
      reject(error);
    };
    const read = (chunk: Buffer) => {
      output += chunk.toString();
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve({
          port,
          kill: () => end('SIGKILL'),
          stop: () => end('SIGTERM'),
          alive: () => proc.exitCode === null && proc.signalCode === null,
        });
      }
    };
    proc.stdout!.on('data', read);
    proc.stderr!.on('data', read);
    proc.once('exit', (code) => fail(new Error(`${command} on ${port} exited (${code}) before it was ready:\n${output}`)));
  });
}

/** Polls `check` every 50 ms until it returns a value, for at most `ms`. */
export async function waitFor<T>(what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what}: not within ${ms} ms${last instanceof Error ? ` (last error: ${last.message})` : ''}`);
}

/** The test's own clients: a node going away is what the tests do, not news. */
const quiet = <T extends { on(event: 'error', listener: () => void): unknown }>(client: T): T => {
  client.on('error', () => {});
  return client;
};

const BASE = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];

export interface TestSentinelGroup {
  readonly masterName: string;
  /** redis+sentinel:// URL naming the three Sentinels and the master, the data nodes' password in it. */
  readonly url: string;
  readonly sentinelPassword: string;
  readonly primaryPort: number;
  readonly replicaPort: number;
  /** The port of the master the Sentinels name now. */
  masterPort(): Promise<number>;
  /** SIGKILL to the primary started first. */
  killPrimary(): Promise<void>;
  /** SIGKILL to the replica. */
  killReplica(): Promise<void>;
  /** A client of the master the Sentinels name (the test's own view). */
  client(): Redis;
  /** A client of one data node, whatever its role. */
  node(port: number): Redis;
  /** A client of the nth Sentinel. */
  sentinel(index: number): Redis;
  close(): Promise<void>;
}

/**
 * A primary and a replica (password `dataPassword`), three Sentinels (password
 * `sentinelPassword`, quorum 2) that declare a master down after `downAfterMs`. Resolves once
 * every Sentinel knows the replica and the other two, so a failover can start at once.
 */
export async function startSentinelGroup(
  options: { dataPassword?: string; sentinelPassword?: string; downAfterMs?: number } = {},
): Promise<TestSentinelGroup> {
  const { dataPassword = 'data pass/:@', sentinelPassword = 'sentinel-pass', downAfterMs = 1000 } = options;
  const masterName = 'mcp-limits';
  const dir = mkdtempSync(join(tmpdir(), 'test-sentinel-'));
  const servers: Server[] = [];
  try {
    const [primaryPort, replicaPort] = [await freePort(), await freePort()];
    const auth = ['--requirepass', dataPassword, '--masterauth', dataPassword];
    servers.push(
      await startServer(
        'redis-server',
        [...BASE, '--port', String(primaryPort), '--dir', dir, ...auth],
        primaryPort,
        /Ready to accept connections/,
      ),
    );
    servers.push(
      await startServer(
        'redis-server',
        [...BASE, '--port', String(replicaPort), '--dir', dir, ...auth, '--replicaof', '127.0.0.1', String(primaryPort)],
        replicaPort,
        /MASTER <-> REPLICA sync: Finished with success/,
      ),
    );
    const sentinelPorts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      sentinelPorts.push(port);
      const file = join(dir, `sentinel-${i}.conf`);
      // Sentinel rewrites its file (known replicas, Sentinels, the current epoch): one each.
      writeFileSync(
        file,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `requirepass "${sentinelPassword}"`,
          `sentinel monitor ${masterName} 127.0.0.1 ${primaryPort} 2`,
          `sentinel auth-pass ${masterName} "${dataPassword}"`,
          `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
          `sentinel failover-timeout ${masterName} 10000`,
          '',
        ].join('\n'),
      );
      servers.push(await startServer('redis-sentinel', [file], port, /\+monitor master/));
    }
    const sentinel = (port: number) =>
      quiet(new Redis({ host: '127.0.0.1', port, password: sentinelPassword, lazyConnect: true, maxRetriesPerRequest: 0 }));
    // Ready for a failover: each Sentinel knows the replica and the two other Sentinels.
    for (const port of sentinelPorts) {
      const probe = sentinel(port);
      try {
        await waitFor(`Sentinel ${port} knowing its replica and peers`, 30_000, async () => {
          const replicas = (await probe.call('SENTINEL', 'REPLICAS', masterName)) as unknown[];
          const peers = (await probe.call('SENTINEL', 'SENTINELS', masterName)) as unknown[];
          return replicas.length === 1 && peers.length === 2 ? true : undefined;
        });
      } finally {
        probe.disconnect();
      }
    }
    const hosts = sentinelPorts.map((port) => `127.0.0.1:${port}`).join(',');
    return {
      masterName,
      url: `redis+sentinel://:${encodeURIComponent(dataPassword)}@${hosts}/${masterName}`,
      sentinelPassword,
      primaryPort,
      replicaPort,
      async masterPort() {
        const probe = sentinel(sentinelPorts[0]!);
        try {
          const [, port] = (await probe.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)) as [string, string];
          return Number(port);
        } finally {
          probe.disconnect();
        }
      },
      killPrimary: () => servers[0]!.kill(),
      killReplica: () => servers[1]!.kill(),
      client: () =>
        quiet(
          new Redis({
            sentinels: sentinelPorts.map((port) => ({ host: '127.0.0.1', port })),
            name: masterName,
            password: dataPassword,
            sentinelPassword,
          }),
        ),
      sentinel: (index) => sentinel(sentinelPorts[index]!),
      node: (port) => quiet(new Redis({ host: '127.0.0.1', port, password: dataPassword, maxRetriesPerRequest: 0 })),
      async close() {
        await Promise.all(servers.map((s) => s.stop()));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await Promise.all(servers.map((s) => s.kill()));
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

export interface TestCluster {
  /** redis+cluster:// URL naming every node. */
  readonly url: string;
  readonly ports: readonly number[];
  /** SIGKILL to the master of the nth third of the slots. */
  kill(index: number): Promise<void>;
  /** SIGKILL to the node on `port`. */
  killPort(port: number): Promise<void>;
  /** The master serving `key`'s slot and its replicas, as the cluster says now. */
  nodesFor(key: string): Promise<{ master: number; replicas: number[] }>;
  /** A cluster client of the test's own. */
  client(): import('ioredis').Cluster;
  close(): Promise<void>;
}

/**
 * Three masters, the 16384 slots split in thirds, each with `replicas` replicas (none by
 * default); resolves once the cluster says ok and every replica is in sync with its master.
 */
export async function startRedisCluster(options: { nodeTimeoutMs?: number; replicas?: number } = {}): Promise<TestCluster> {
  const { nodeTimeoutMs = 1000, replicas = 0 } = options;
  const dir = mkdtempSync(join(tmpdir(), 'test-cluster-'));
  const servers: Server[] = [];
  try {
    for (let i = 0; i < 3 * (1 + replicas); i++) {
      const port = await freePort();
      const args = [
        ...BASE,
        '--port',
        String(port),
        '--dir',
        dir,
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout',
        String(nodeTimeoutMs),
      ];
      servers.push(await startServer('redis-server', args, port, /Ready to accept connections/));
    }
    const ports = servers.map((s) => s.port);
    await run(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'],
      { timeout: 20_000 },
    );
    for (const port of ports) {
      const probe = quiet(new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0 }));
      try {
        await waitFor(`cluster node ${port} saying ok`, 20_000, async () =>
          /cluster_state:ok/.test(String(await probe.call('CLUSTER', 'INFO'))) ? true : undefined,
        );
        // Every node sees every master with its replicas (gossip takes a moment after the create),
        // and a replica is in sync: else a failover would lose what its master holds.
        await waitFor(`cluster node ${port} knowing every replica, in sync`, 20_000, async () => {
          const ranges = (await probe.call('CLUSTER', 'SLOTS')) as unknown[][];
          if (ranges.length === 0 || ranges.some((range) => range.length !== 3 + replicas)) return undefined;
          const role = (await probe.call('ROLE')) as unknown[];
          return role[0] === 'master' || role[3] === 'connected' ? true : undefined;
        });
      } finally {
        probe.disconnect();
      }
    }
    const { Cluster } = await import('ioredis');
    return {
      url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
      ports,
      kill: (index) => servers[index]!.kill(),
      killPort: (port) => servers.find((s) => s.port === port)!.kill(),
      async nodesFor(key) {
        const live = servers.filter((s) => s.alive()).map((s) => s.port);
        return waitFor(`a live node telling the slot of ${key}`, 5000, async () => {
          const probe = quiet(new Redis({ host: '127.0.0.1', port: live[0]!, lazyConnect: true, maxRetriesPerRequest: 0 }));
          try {
            const slot = Number(await probe.call('CLUSTER', 'KEYSLOT', key));
            // Each range: [from, to, [host, port, id] of the master, then one such entry per replica].
            const ranges = (await probe.call('CLUSTER', 'SLOTS')) as [number, number, ...[string, number][]][];
            const range = ranges.find(([from, to]) => from <= slot && slot <= to);
            if (range === undefined) return undefined;
            const [master, ...others] = range.slice(2) as [string, number][];
            return { master: master![1], replicas: others.map((node) => node[1]) };
          } finally {
            probe.disconnect();
          }
        });
      },
      client: () => quiet(new Cluster(ports.map((port) => ({ host: '127.0.0.1', port })))),
      async close() {
        await Promise.all(servers.map((s) => s.stop()));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await Promise.all(servers.map((s) => s.kill()));
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}
