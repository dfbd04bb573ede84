import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import type { Guard } from '../../src/mcp/guard.js';

/** Writes raw bytes and resolves with everything answered before the close. */
function raw(url: string, data: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(data));
    let answer = '';
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer')));
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.on('close', () => resolve(answer));
    socket.on('error', (error) => (answer ? resolve(answer) : reject(error)));
  });
}

const CODES = new Set([
  'unauthorized',
  'invalid_token',
  'insufficient_scope',
  'temporarily_unavailable',
  'invalid_request',
  'forbidden_origin',
  'not_implemented',
  'method_not_allowed',
  'payload_too_large',
  'rate_limited',
  'bad_gateway',
  'gateway_timeout',
  'server_error',
]);

/** What every JSON error the sidecar writes itself carries, whatever wrote it. */
function expectOneShape(status: number, headers: Record<string, string | string[] | undefined>, text: string, expected: number): void {
  expect(status).toBe(expected);
  expect(headers['content-type']).toBe('application/json; charset=utf-8');
  expect(headers['cache-control']).toBe('no-store');
  expect(headers['x-request-id']).toMatch(/^[\w.:-]{1,128}$/);
  expect(Number(headers['content-length'])).toBe(Buffer.byteLength(text));
  const body = JSON.parse(text) as Record<string, unknown>;
  expect(Object.keys(body).filter((key) => !['error', 'reason', 'error_description'].includes(key))).toEqual([]);
  expect(CODES).toContain(body.error);
  expect(body.error_description).toEqual(expect.any(String));
}

describe('the JSON errors the sidecar writes itself', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let down: RunningSidecar;
  let token: string;
  // A guard with a bug where the interceptor does not catch it: the sidecar's own failure.
  const broken: Guard = {
    judge: () => ({ effect: 'allow' }),
    rewrites: () => {
      throw new Error('a bug');
    },
  };

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    token = await issuer.mint();
    sidecar = await startSidecar(testEnv(issuer, upstream, { ALLOWED_ORIGINS: 'https://coder.example' }), { guards: [broken] });
    // Nothing listens on port 9 of loopback.
    down = await startSidecar(testEnv(issuer, { url: 'http://127.0.0.1:9' }));
  });
  afterAll(async () => {
    await sidecar.close();
    await down.close();
    await upstream.close();
    await issuer.close();
  });

  const cases: [string, () => { url: string; method?: string; headers?: Record<string, string>; body?: string }, number, string][] = [
    ['a rejection', () => ({ url: `${sidecar.url}/mcp` }), 401, 'unauthorized'],
    ['an edge refusal', () => ({ url: `${sidecar.url}/mcp`, headers: { origin: 'https://evil.example' } }), 403, 'forbidden_origin'],
    [
      'a method not forwarded',
      () => ({ url: `${sidecar.url}/mcp`, method: 'TRACE', headers: { authorization: `Bearer ${token}` } }),
      405,
      'method_not_allowed',
    ],
    [
      'a method on the metadata',
      () => ({ url: `${sidecar.url}/.well-known/oauth-protected-resource`, method: 'POST' }),
      405,
      'method_not_allowed',
    ],
    [
      'an MCP body that cannot be judged',
      () => ({
        url: `${sidecar.url}/mcp`,
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: 'not json',
      }),
      400,
      'invalid_request',
    ],
    [
      "the sidecar's own failure",
      () => ({
        url: `${sidecar.url}/mcp`,
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
      }),
      500,
      'server_error',
    ],
    ['an upstream failure', () => ({ url: `${down.url}/mcp`, headers: { authorization: `Bearer ${token}` } }), 502, 'bad_gateway'],
  ];

  it.each(cases)('%s: one shape, no-store and the request id', async (_name, make, status, code) => {
    const { url, method = 'GET', headers = {}, body } = make();
    const res = await request(url, { method: method as 'GET', headers, body });
    const text = await res.body.text();
    expectOneShape(res.statusCode, res.headers, text, status);
    expect(JSON.parse(text).error).toBe(code);
  });

  it('a path the upstream could resolve differently', async () => {
    const answer = await raw(
      sidecar.url,
      `GET /a/../mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nX-Request-Id: mine-1\r\nConnection: close\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toMatch(/\r\nx-request-id: [\w.:-]{1,128}\r\n/i);
    expect(answer).toMatch(/\r\ncache-control: no-store\r\n/i);
    expect(answer).toContain('"error":"invalid_request"');
  });

  it("what Node's parser refuses: the same shape as text, with a request id", async () => {
    const answer = await raw(sidecar.url, 'GET /mcp HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n');
    const [head, text] = answer.split('\r\n\r\n') as [string, string];
    const headers = Object.fromEntries(
      head
        .split('\r\n')
        .slice(1)
        .map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
    );
    expectOneShape(Number(head.split(' ')[1]), headers, text, 400);
    expect(headers.connection).toBe('close');
  });
});
