import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { createLogger } from '../../src/observability/log.js';

/** Writes raw bytes (at once, or in the chunks given) and resolves with everything answered before the close. */
function raw(url: string, data: string | string[]): Promise<string> {
  const { hostname, port } = new URL(url);
  const chunks = typeof data === 'string' ? [data] : data;
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      for (const chunk of chunks) socket.write(chunk);
    });
    let answer = '';
    socket.setTimeout(15_000, () => socket.destroy(new Error('no answer')));
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('close', () => resolve(answer));
    socket.on('error', (error) => (answer ? resolve(answer) : reject(error)));
  });
}

/** Every way a secret could be written into a log line: as text, as a Buffer's JSON byte list, base64, hex. */
function encodings(secret: string): string[] {
  const bytes = Buffer.from(secret);
  // A 40-byte window is enough to recognise the secret, and survives the secret being split across chunks.
  const middle = bytes.subarray(Math.floor(bytes.length / 2) - 20, Math.floor(bytes.length / 2) + 20);
  return [secret.slice(secret.length / 2 - 20, secret.length / 2 + 20), [...middle].join(','), middle.toString('hex')];
}

describe("requests Node's parser refuses, at LOG_LEVEL=trace", () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let token: string;
  const output: string[] = [];
  const lines = () =>
    output
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    const logger = createLogger(
      'trace',
      new Writable({
        write(chunk, _e, done) {
          output.push(String(chunk));
          done();
        },
      }),
    );
    sidecar = await startSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'trace' }), {
      logger,
      clientLimits: { headersTimeoutMs: 500, requestTimeoutMs: 1000, timeoutCheckMs: 100 },
    });
    // A large Keycloak token: 200 groups make it about 8 KB.
    token = await issuer.mint({ groups: Array.from({ length: 200 }, (_, i) => `/organisation/department-${i}`) });
  });
  afterAll(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  const status = (answer: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);
  const lastStatus = (answer: string) => Number([...answer.matchAll(/HTTP\/1\.1 (\d{3})/g)].at(-1)?.[1]);
  const auth = () => `Authorization: Bearer ${token}\r\n`;

  const cases: [string, () => string | string[], number][] = [
    ['headers over the limit after the token', () => `GET /mcp HTTP/1.1\r\nHost: x\r\n${auth()}X-Pad: ${'a'.repeat(9000)}\r\n\r\n`, 431],
    ['a bad header character after the token', () => `GET /mcp HTTP/1.1\r\nHost: x\r\n${auth()}X-Bad: a\u0001b\r\n\r\n`, 400],
    ['a bad header name after the token', () => `GET /mcp HTTP/1.1\r\nHost: x\r\n${auth()}Bad Name: v\r\n\r\n`, 400],
    [
      'Content-Length with Transfer-Encoding after the token',
      () => `POST /mcp HTTP/1.1\r\nHost: x\r\n${auth()}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      400,
    ],
    [
      'a bad chunk after the token',
      () => `POST /mcp HTTP/1.1\r\nHost: x\r\n${auth()}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`,
      400,
    ],
    [
      'pipelined garbage after a good request with the token',
      () => `GET /mcp HTTP/1.1\r\nHost: x\r\n${auth()}\r\nGARBAGE ${token} \u0001\r\n${auth()}\r\n`,
      400,
    ],
    [
      'a second request whose token line is broken',
      () => `GET /mcp HTTP/1.1\r\nHost: x\r\n${auth()}\r\nGET /mcp HTTP/1.1\r\n${auth().slice(0, -2)}\n\u0000\r\n\r\n`,
      400,
    ],
    ['the token in a bad request line', () => `GET /mcp?access_token=${token} HTTP/9.9\r\nHost: x\r\n\r\n`, 400],
    ['headers cut off after the token (header timeout)', () => [`GET /mcp HTTP/1.1\r\nHost: x\r\n${auth()}X-Slow: `], 408],
  ];

  it.each(cases)('%s: refused with a fixed JSON body, and the token is logged at no level in no form', async (_name, data, expected) => {
    output.length = 0;
    const answer = await raw(sidecar.url, data());
    expect(lastStatus(answer)).toBe(expected);
    sidecar.app.logger.flush();
    const all = output.join('');
    for (const form of encodings(token)) expect(all).not.toContain(form);
    expect(all.toLowerCase()).not.toContain('bearer');
    expect(all).not.toContain('rawPacket');
    const body = answer.slice(answer.lastIndexOf('\r\n\r\n') + 4);
    expect(JSON.parse(body)).toMatchObject({ error: expect.any(String), error_description: expect.any(String) });
    expect(answer).not.toContain(token.slice(100, 140));
    // The refused request has its line, like every request.
    expect(lines().filter((l) => l.msg === 'request' && l.status === expected && l.decision === 'reject')).toHaveLength(1);
    expect(status(answer)).toBeGreaterThan(0);
  });

  it('counts refused requests by a bounded reason', async () => {
    const res = await request(`${sidecar.adminUrl}/metrics`);
    const text = await res.body.text();
    expect(text).toMatch(/mcp_auth_http_refused_total\{reason="headers_too_large"\} [1-9]/);
    expect(text).toMatch(/mcp_auth_http_refused_total\{reason="bad_request"\} [1-9]/);
    expect(text).toMatch(/mcp_auth_http_refused_total\{reason="request_timeout"\} [1-9]/);
  });
});

describe("a target Fastify's router refuses before the hooks", () => {
  it('/mcp%ZZ gets a fixed 400 that echoes nothing, its request line and its count; a method not forwarded a 405 that echoes nothing', async () => {
    const issuer = await startIssuer();
    await issuer.addKey();
    const upstream = await startUpstream();
    const output: string[] = [];
    const logger = createLogger(
      'trace',
      new Writable({
        write(chunk, _e, done) {
          output.push(String(chunk));
          done();
        },
      }),
    );
    const sidecar = await startSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'trace' }), { logger });
    try {
      const token = await issuer.mint();
      const res = await request(`${sidecar.url}/mcp%ZZ?secret-query=value`, { headers: { authorization: `Bearer ${token}` } });
      const body = await res.body.text();
      expect(res.statusCode).toBe(400);
      expect(JSON.parse(body)).toEqual({
        error: 'invalid_request',
        reason: 'bad_target',
        error_description: 'the request target is not a valid URL path',
      });
      expect(body).not.toContain('ZZ');
      expect(upstream.seen).toHaveLength(0);
      sidecar.app.logger.flush();
      const line = output
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === 'request');
      expect(line).toMatchObject({
        reqId: res.headers['x-request-id'],
        method: 'GET',
        path: '/mcp%ZZ',
        status: 400,
        decision: 'reject',
        reason: 'bad_target',
      });
      expect(output.join('')).not.toContain('secret-query');
      const metrics = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
      expect(metrics).toContain('mcp_auth_http_refused_total{reason="bad_target"} 1');

      // A method not forwarded, with a valid token: 405 naming the methods, nothing of the target.
      for (const method of ['PROPFIND', 'TRACE', 'SEARCH']) {
        const other = await request(`${sidecar.url}/mcp?secret-query=value`, { method, headers: { authorization: `Bearer ${token}` } });
        const text = await other.body.text();
        expect(other.statusCode).toBe(405);
        expect(other.headers.allow).toContain('POST');
        expect(text).not.toContain('secret-query');
        expect(text).not.toContain('/mcp');
      }
    } finally {
      await sidecar.close();
      await upstream.close();
      await issuer.close();
    }
  });
});
