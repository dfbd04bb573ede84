import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { promisify } from 'node:util';
import { runInNewContext } from 'node:vm';
import { Pool } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const run = promisify(execFile);

// In a process of its own (vitest and the MCP SDK load fetch in this one): starts the sidecar,
// sends one request through it, and reports which of undici's entry points were loaded, and which
// libraries of optional features (CommonJS, so require.cache lists them).
const REPORT_LOADED = `
  const { createRequire } = await import('node:module');
  const require = createRequire(process.cwd() + '/');
  // Required, not imported: on Node 24 an import of node:http reads its lazy WebSocket export, and
  // that loads Node's undici. The sidecar imports no value from node:http (Fastify requires it).
  const { get } = require('node:http');
  const { loadConfig } = await import('./src/config/config.ts');
  const { buildApp } = await import('./src/app.ts');
  const app = await buildApp(loadConfig(process.env));
  const { proxyUrl } = await app.listen();
  const res = await new Promise((resolve) => get(proxyUrl + '/mcp', { headers: { authorization: process.env.TEST_AUTHORIZATION } }, resolve));
  res.resume();
  await app.close();
  console.log(JSON.stringify({
    status: res.statusCode,
    undiciIndex: Object.keys(require.cache).filter((file) => file.endsWith('/node_modules/undici/index.js')),
    nodeUndici: process.moduleLoadList.filter((name) => name.includes('deps/undici')),
    features: ['yaml', 'rate-limiter-flexible', 'ioredis'].filter((name) =>
      Object.keys(require.cache).some((file) => file.includes('/node_modules/' + name + '/')),
    ),
  }));
`;

describe('memory', () => {
  let issuer: TestIssuer;
  let upstream: Server;
  let sidecar: RunningSidecar;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    // An upstream that keeps no record of what it saw, so that only the sidecar holds memory.
    upstream = createServer((req, res) => {
      req.resume();
      res.end('{}');
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    sidecar = await startSidecar(testEnv(issuer, { url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` }));
  });
  afterAll(async () => {
    await sidecar.close();
    upstream.close();
    await issuer.close();
  });

  it('keeps nothing per request: 20,000 requests with one token leave the heap where it was', async () => {
    const client = new Pool(sidecar.url, { connections: 20 });
    const token = await issuer.mint();
    // Each request's token is a new string, as on the wire.
    const send = async (count: number) => {
      for (let sent = 0; sent < count; sent += 200) {
        await Promise.all(
          Array.from({ length: 200 }, async () => {
            const res = await client.request({ path: '/mcp', method: 'GET', headers: { authorization: `Bearer ${token.slice(0)}` } });
            await res.body.dump();
            expect(res.statusCode).toBe(200);
          }),
        );
      }
    };
    await send(2_000); // warm-up: pools, caches and compiled code settle
    gc();
    const before = process.memoryUsage().heapUsed;
    await send(20_000);
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    await client.close();
    // A verdict cache that kept 150 bytes a hit (as one version did) grows 3 MB here.
    expect(grown).toBeLessThan(1.5 * 1024 * 1024);
  }, 60_000);

  /** What a sidecar with `env` loads, in a process of its own. */
  async function loaded(env: Record<string, string> = {}) {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', REPORT_LOADED], {
      env: {
        PATH: process.env.PATH,
        ...testEnv(issuer, { url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` }, env),
        TEST_AUTHORIZATION: `Bearer ${await issuer.mint()}`,
      },
      timeout: 30_000,
    });
    return JSON.parse(stdout) as { status: number; undiciIndex: string[]; nodeUndici: string[]; features: string[] };
  }

  it("loads neither undici's index nor Node's bundled undici (3 MB of heap for code that never runs)", async () => {
    expect(await loaded()).toMatchObject({ status: 200, undiciIndex: [], nodeUndici: [] });
  }, 40_000);

  it('loads the libraries of the tool policy and the rate limits only when they are configured (about 16 MiB resident)', async () => {
    expect((await loaded()).features).toEqual([]);
    const configured = await loaded({
      POLICY_FILE: new URL('../../examples/policy/datastore.yaml', import.meta.url).pathname,
      RATE_LIMIT_USER_PER_MINUTE: '600',
    });
    expect(configured.features).toEqual(['yaml', 'rate-limiter-flexible', 'ioredis']);
  }, 60_000);
});
