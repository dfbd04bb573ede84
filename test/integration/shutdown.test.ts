import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { testEnv } from '../helpers/sidecar.js';

interface Sidecar {
  child: ChildProcess;
  proxyUrl: string;
  adminUrl: string;
  /** Resolves with the first log line whose msg is `msg`. */
  logged(msg: string): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

async function spawnSidecar(env: Record<string, string>): Promise<Sidecar> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { PATH: process.env.PATH, ...env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: Record<string, unknown>[] = [];
  const waiters: [string, (line: Record<string, unknown>) => void][] = [];
  createInterface({ input: child.stdout! }).on('line', (text) => {
    const line = JSON.parse(text) as Record<string, unknown>;
    lines.push(line);
    for (const [msg, resolve] of waiters) if (line.msg === msg) resolve(line);
  });
  const logged = (msg: string) =>
    new Promise<Record<string, unknown>>((resolve) => {
      const seen = lines.find((l) => l.msg === msg);
      if (seen) resolve(seen);
      else waiters.push([msg, resolve]);
    });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const started = await Promise.race([
    logged('mcp-auth-sidecar started'),
    exited.then((code) => {
      throw new Error(`exited ${code}`);
    }),
  ]);
  return { child, proxyUrl: started.proxyUrl as string, adminUrl: started.adminUrl as string, logged, exited };
}

describe.each(['SIGTERM', 'SIGINT'] as const)('on %s', (signal) => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: Sidecar | undefined;
  let endStream: (() => void) | undefined;

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    upstream.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: started\n\n');
      endStream = () => res.end('data: done\n\n');
    });
  });
  afterEach(async () => {
    if (sidecar?.child.exitCode === null) sidecar.child.kill('SIGKILL');
    await upstream.close();
    await issuer.close();
  });

  it('turns /readyz 503 at once, stops accepting, lets the in-flight stream finish, exits 0', async () => {
    sidecar = await spawnSidecar(testEnv(issuer, upstream, { SHUTDOWN_GRACE_SECONDS: '20' }));
    expect((await request(`${sidecar.adminUrl}/readyz`)).statusCode).toBe(200);
    const stream = await request(`${sidecar.proxyUrl}/mcp`, { headers: { authorization: `Bearer ${await issuer.mint()}` } });
    const reader = stream.body[Symbol.asyncIterator]();
    expect(String((await reader.next()).value)).toBe('data: started\n\n');

    sidecar.child.kill(signal);
    await sidecar.logged('draining');
    const ready = await request(`${sidecar.adminUrl}/readyz`);
    expect(ready.statusCode).toBe(503);
    expect(JSON.stringify(await ready.body.json())).toContain('draining');
    await expect(request(`${sidecar.proxyUrl}/mcp`, { headers: { authorization: `Bearer ${await issuer.mint()}` } })).rejects.toThrow();

    endStream!();
    expect(String((await reader.next()).value)).toBe('data: done\n\n');
    expect(await sidecar.exited).toBe(0);
    // Log lines are written in batches: the ones still gathered are written before the exit.
    expect(await sidecar.logged('request')).toMatchObject({ decision: 'accept', status: 200 });
    await sidecar.logged('stopped');
  });

  it('cuts a stream that outlives SHUTDOWN_GRACE_SECONDS and still exits 0', async () => {
    sidecar = await spawnSidecar(testEnv(issuer, upstream, { SHUTDOWN_GRACE_SECONDS: '1' }));
    const stream = await request(`${sidecar.proxyUrl}/mcp`, { headers: { authorization: `Bearer ${await issuer.mint()}` } });
    const body = stream.body.text().catch((error: Error) => error);
    sidecar.child.kill(signal);
    expect(await sidecar.exited).toBe(0);
    expect(await body).toBeInstanceOf(Error);
  });
});
