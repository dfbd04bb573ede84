import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';

/** A TCP server that does something unhelpful with every connection. */
async function startBadUpstream(onConnection: (socket: import('node:net').Socket) => void): Promise<{ url: string; server: Server }> {
  const server = createServer(onConnection);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

async function failureCount(sidecar: RunningSidecar, kind: string): Promise<number> {
  const text = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
  return Number(new RegExp(`^mcp_auth_upstream_failures_total\\{kind="${kind}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
}

describe('upstream failures', () => {
  let issuer: TestIssuer;
  let sidecar: RunningSidecar | undefined;
  let bad: Server | undefined;

  afterEach(async () => {
    await sidecar?.close();
    bad?.close();
    await issuer.close();
  });

  async function run(upstreamUrl: string) {
    issuer = await startIssuer();
    await issuer.addKey();
    sidecar = await startSidecar(testEnv(issuer, { url: upstreamUrl }, { UPSTREAM_TIMEOUT_SECONDS: '1' }));
    const res = await request(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await issuer.mint()}` },
      body: '{}',
    });
    return { status: res.statusCode, body: await res.body.json(), type: res.headers['content-type'] };
  }

  it('unreachable upstream → 502 JSON, kind="connect"', async () => {
    const closed = await startBadUpstream(() => undefined);
    const url = `http://127.0.0.1:${(closed.server.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.server.close(resolve));
    const { status, body, type } = await run(url);
    expect(status).toBe(502);
    expect(type).toMatch(/^application\/json/);
    expect(body).toEqual({ error: 'bad_gateway', error_description: 'upstream is unreachable' });
    expect(await failureCount(sidecar!, 'connect')).toBe(1);
  });

  it('no response headers within UPSTREAM_TIMEOUT_SECONDS → 504 JSON, kind="timeout"', async () => {
    const silent = await startBadUpstream(() => undefined);
    bad = silent.server;
    const { status, body } = await run(silent.url);
    expect(status).toBe(504);
    expect(body).toEqual({ error: 'gateway_timeout', error_description: 'upstream did not answer in time' });
    expect(await failureCount(sidecar!, 'timeout')).toBe(1);
    expect(await failureCount(sidecar!, 'connect')).toBe(0);
  });

  it('connection reset by the upstream → 502 JSON, kind="reset"', async () => {
    const resetting = await startBadUpstream((socket) => socket.once('data', () => socket.resetAndDestroy()));
    bad = resetting.server;
    const { status, body } = await run(resetting.url);
    expect(status).toBe(502);
    expect(body).toEqual({ error: 'bad_gateway', error_description: 'upstream closed the connection' });
    expect(await failureCount(sidecar!, 'reset')).toBe(1);
  });

  it('an https upstream whose certificate does not verify → 502 kind="connect", nothing sent to it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        '/CN=127.0.0.1',
        '-days',
        '1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    let requests = 0;
    const https = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (_req, res) => {
      requests++;
      res.end('secret');
    });
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
    try {
      const { status, body } = await run(`https://127.0.0.1:${(https.address() as AddressInfo).port}`);
      expect(status).toBe(502);
      expect(body).toEqual({ error: 'bad_gateway', error_description: 'upstream is unreachable' });
      expect(requests).toBe(0);
      expect(await failureCount(sidecar!, 'connect')).toBe(1);
    } finally {
      https.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
