import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Pool } from 'undici';
import { startIssuer, type TestIssuer } from './helpers/issuer.js';
import { startSidecar, testEnv, type RunningSidecar } from './helpers/sidecar.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

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
        await Promise.all(Array.from({ length: 200 }, async () => {
          const res = await client.request({ path: '/mcp', method: 'GET', headers: { authorization: `Bearer ${token.slice(0)}` } });
          await res.body.dump();
          expect(res.statusCode).toBe(200);
        }));
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
});
