import { afterEach, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';

/** Writes raw bytes and resolves with everything the sidecar answered before closing. */
function raw(url: string, data: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(data));
    let answer = '';
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer')));
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('close', () => resolve(answer));
    socket.on('error', (error) => (answer ? resolve(answer) : reject(error)));
  });
}

const metric = async (adminUrl: string, reason: string) =>
  Number(
    new RegExp(`mcp_auth_http_refused_total\\{reason="${reason}"\\} (\\d+)`).exec(
      await (await request(`${adminUrl}/metrics`)).body.text(),
    )?.[1],
  );

describe('edges checked before anything else', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;

  async function start(env: Record<string, string> = {}) {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream, env));
  }
  afterEach(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  it('ALLOWED_ORIGINS: an Origin not listed gets 403 JSON, before the token and on the metadata path too; no Origin is unaffected', async () => {
    await start({ ALLOWED_ORIGINS: 'https://coder.example.com,http://localhost:3000' });
    const authorization = `Bearer ${await issuer.mint()}`;
    const call = async (path: string, headers: Record<string, string>) => {
      const res = await request(`${sidecar.url}${path}`, { headers });
      return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown>, connection: res.headers.connection };
    };
    // A DNS-rebinding page with a valid token, and without one: refused before the token is looked at.
    const hostile: Record<string, string>[] = [
      { origin: 'http://evil.example', authorization },
      { origin: 'http://evil.example' },
      { origin: 'null', authorization },
    ];
    for (const headers of hostile) {
      const refused = await call('/mcp', headers);
      expect(refused.status).toBe(403);
      expect(refused.body).toEqual({
        error: 'forbidden_origin',
        reason: 'origin_not_allowed',
        error_description: 'the Origin of the request is not allowed',
      });
    }
    expect((await call('/.well-known/oauth-protected-resource', { origin: 'http://evil.example' })).status).toBe(403);
    expect(upstream.seen).toHaveLength(0);
    expect(await metric(sidecar.adminUrl, 'origin_not_allowed')).toBe(4);

    // Listed origins (the case of the host does not matter), and no Origin at all, pass on to the token check.
    expect((await call('/mcp', { origin: 'https://coder.example.com', authorization })).status).toBe(200);
    expect((await call('/mcp', { origin: 'HTTP://LOCALHOST:3000', authorization })).status).toBe(200);
    expect((await call('/mcp', { authorization })).status).toBe(200);
    expect((await call('/mcp', { origin: 'https://coder.example.com' })).body).toMatchObject({ reason: 'missing_token' });
    expect((await call('/.well-known/oauth-protected-resource', { origin: 'https://coder.example.com' })).status).toBe(200);
    // A port or scheme that differs is another origin; two Origin headers match nothing.
    expect((await call('/mcp', { origin: 'https://coder.example.com:8443', authorization })).status).toBe(403);
    expect((await call('/mcp', { origin: 'http://coder.example.com', authorization })).status).toBe(403);
    const twice = await raw(
      sidecar.url,
      `GET /mcp HTTP/1.1\r\nHost: x\r\n${`Authorization: ${authorization}\r\n`}Origin: https://coder.example.com\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n`,
    );
    expect(twice).toMatch(/^HTTP\/1\.1 403/);
  });

  it('ALLOWED_ORIGINS empty (the default): any Origin is refused, requests without one are served', async () => {
    await start();
    const authorization = `Bearer ${await issuer.mint()}`;
    const browser = await request(`${sidecar.url}/mcp`, { headers: { authorization, origin: 'http://localhost:6274' } });
    expect(browser.statusCode).toBe(403);
    await browser.body.dump();
    const server = await request(`${sidecar.url}/mcp`, { headers: { authorization } });
    expect(server.statusCode).toBe(200);
    await server.body.dump();
  });

  it('a transfer coding other than plain chunked gets 501 JSON and is not forwarded', async () => {
    await start();
    const token = await issuer.mint();
    for (const coding of ['gzip, chunked', 'deflate,chunked', 'identity, chunked']) {
      const answer = await raw(
        sidecar.url,
        `POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nTransfer-Encoding: ${coding}\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
      );
      expect(answer, coding).toMatch(/^HTTP\/1\.1 501/);
      expect(answer).toContain('"reason":"unsupported_transfer_coding"');
    }
    expect(upstream.seen).toHaveLength(0);
    expect(await metric(sidecar.adminUrl, 'unsupported_transfer_coding')).toBe(3);
    // Plain chunked (any case) passes, de-chunked into the same bytes.
    const answer = await raw(
      sidecar.url,
      `POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(upstream.seen.map((s) => s.body)).toEqual(['hello']);
  });
});
