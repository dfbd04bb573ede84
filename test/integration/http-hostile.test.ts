import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';

/** Writes raw bytes and resolves with everything the sidecar answered before closing. */
function raw(url: string, data: string, { endAfterMs }: { endAfterMs?: number } = {}): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(data));
    let answer = '';
    socket.setTimeout(15_000, () => socket.destroy(new Error('no answer')));
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
      if (endAfterMs !== undefined) setTimeout(() => socket.destroy(), endAfterMs);
    });
    socket.on('close', () => resolve(answer));
    socket.on('error', (error) => (answer ? resolve(answer) : reject(error)));
  });
}

const status = (answer: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);

describe('malformed HTTP never gets through unauthenticated', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let token: string;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream));
    token = await issuer.mint();
  });
  afterAll(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });
  afterEach(() => {
    expect(upstream.seen.filter((s) => !s.headers['x-verified-user'])).toHaveLength(0);
  });

  it('oversized headers → 431', async () => {
    const answer = await raw(sidecar.url, `GET /mcp HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(status(answer)).toBe(431);
  });

  it('Content-Length with Transfer-Encoding (request smuggling) → 400', async () => {
    const smuggle = `POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n`;
    expect(status(await raw(sidecar.url, smuggle))).toBe(400);
    expect(upstream.seen).toHaveLength(0);
  });

  it('two Content-Length values → 400', async () => {
    expect(status(await raw(sidecar.url, `POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab`))).toBe(400);
  });

  it('invalid characters in a header → 400', async () => {
    expect(status(await raw(sidecar.url, `GET /mcp HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0001b\r\n\r\n`))).toBe(400);
    expect(status(await raw(sidecar.url, `GET /mcp HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n`))).toBe(400);
  });

  it.each([
    'GET http://evil.example/metadata HTTP/1.1',
    'GET /../../etc/passwd HTTP/1.1',
    'GET /%2e%2e/%2e%2e/admin HTTP/1.1',
    'GET /mcp/../.well-known/oauth-protected-resource/../../admin HTTP/1.1',
    'GET //.well-known/oauth-protected-resource HTTP/1.1',
    'GET /.well-known/oauth-protected-resource%2f..%2fadmin HTTP/1.1',
    'GET /.well-known/oauth-protected-resource;x HTTP/1.1',
    'OPTIONS * HTTP/1.1',
  ])('%s needs a token like any other request', async (line) => {
    const answer = await raw(sidecar.url, `${line}\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect([400, 401, 404]).toContain(status(answer));
    expect(status(answer)).not.toBe(200);
  });

  it.each(['/a/../b?x=1', '/a/./b', '/a/%2E%2E/b', '/a/%2e/b', '/..'])(
    'dot segments (%s) are refused even with a token (the upstream could resolve them differently)',
    async (target) => {
      const before = upstream.seen.length;
      const answer = await raw(
        sidecar.url,
        `GET ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
      );
      expect(status(answer)).toBe(400);
      expect(answer).toContain('"error":"invalid_request"');
      expect(upstream.seen.length).toBe(before);
    },
  );

  it('a target with dots that are not segments is forwarded exactly as sent', async () => {
    const target = '/files/[...slug]/a..b/.hidden?path=../x';
    const answer = await raw(
      sidecar.url,
      `GET ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
    );
    expect(status(answer)).toBe(200);
    expect(upstream.seen.at(-1)!.url).toBe(target);
  });
});

describe('hostile clients', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream), {
      clientLimits: { headersTimeoutMs: 500, requestTimeoutMs: 1000, timeoutCheckMs: 100 },
    });
  });
  afterAll(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  it('cuts a slow-header client, and a slow-body client, while a long event stream lives on', async () => {
    const token = await issuer.mint();
    upstream.handle((req, res) => {
      if (req.url === '/stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: 1\n\n');
        setTimeout(() => res.end('data: 2\n\n'), 1500);
      } else res.end('ok');
    });
    const stream = request(`${sidecar.url}/stream`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.body.text());

    const started = Date.now();
    const slowHeaders = raw(sidecar.url, 'GET /mcp HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    const slowBody = raw(
      sidecar.url,
      `POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 100\r\n\r\n0123456789`,
    );
    const [headersAnswer, bodyAnswer] = await Promise.all([slowHeaders, slowBody]);
    expect(status(headersAnswer)).toBe(408);
    expect(status(bodyAnswer)).toBe(408);
    expect(Date.now() - started).toBeLessThan(5000);
    // The stream outlived both the header and the request timeouts.
    expect(await stream).toBe('data: 1\n\ndata: 2\n\n');
  });
});

describe('the upstream restarting', () => {
  it('gives 502s while it is down and recovers without restarting the sidecar', async () => {
    const issuer = await startIssuer();
    await issuer.addKey();
    let upstream = await startUpstream();
    const port = Number(new URL(upstream.url).port);
    const sidecar = await startSidecar(testEnv(issuer, upstream));
    try {
      const authorization = `Bearer ${await issuer.mint()}`;
      const call = async () => {
        const res = await request(`${sidecar.url}/mcp`, { headers: { authorization } });
        await res.body.text();
        return res.statusCode;
      };
      expect(await call()).toBe(200);
      await upstream.close();
      expect(await call()).toBe(502);
      expect(await call()).toBe(502);
      upstream = await startUpstream(port);
      expect(await call()).toBe(200);
    } finally {
      await sidecar.close();
      await upstream.close();
      await issuer.close();
    }
  });
});
