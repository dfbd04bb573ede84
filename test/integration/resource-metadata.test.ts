import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';

describe('RFC 9728 protected resource metadata', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    sidecar = await startSidecar(
      testEnv(issuer, upstream, { RESOURCE_URL: 'https://mcp.example.com/mcp', RESOURCE_SCOPES: 'openid,datastore' }),
    );
  });
  afterAll(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  it.each(['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp'])(
    'is served at %s without a token',
    async (path) => {
      const res = await request(`${sidecar.url}${path}`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toEqual({
        resource: 'https://mcp.example.com/mcp',
        authorization_servers: [issuer.issuer],
        bearer_methods_supported: ['header'],
        scopes_supported: ['openid', 'datastore'],
      });
      expect(upstream.seen).toHaveLength(0);
    },
  );

  it('is the URL a 401 points to, with the scopes to ask for (RESOURCE_SCOPES)', async () => {
    const res = await request(`${sidecar.url}/mcp`);
    await res.body.text();
    expect(res.headers['www-authenticate']).toBe(
      'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="openid datastore"',
    );
    const invalid = await request(`${sidecar.url}/mcp`, { headers: { authorization: 'Bearer not-a-jwt' } });
    await invalid.body.text();
    expect(invalid.headers['www-authenticate']).toMatch(
      /^Bearer resource_metadata="https:\/\/mcp\.example\.com\/\.well-known\/oauth-protected-resource\/mcp", scope="openid datastore", error="invalid_token", /,
    );
  });

  it('is never forwarded, whatever the method', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH'] as const) {
      const res = await request(`${sidecar.url}/.well-known/oauth-protected-resource`, { method, body: '{}' });
      expect(res.statusCode).toBe(405);
      await res.body.text();
    }
    expect(upstream.seen).toHaveLength(0);
  });

  it.each([
    '/.well-known/oauth-protected-resource-x',
    '/.well-known/oauth-protected-resource/other',
    '/.well-known/oauth-protected-resource/mcp/deeper',
    '/.well-known/OAUTH-protected-resource',
    '/.well-known/oauth-protected-resource/',
  ])('a path that only looks like it (%s) needs a token', async (path) => {
    const res = await request(`${sidecar.url}${path}`);
    expect(res.statusCode).toBe(401);
    await res.body.text();
    expect(upstream.seen).toHaveLength(0);
  });

  it('leaves out scopes_supported when RESOURCE_SCOPES is not set', async () => {
    const plain = await startSidecar(testEnv(issuer, upstream));
    try {
      const res = await request(`${plain.url}/.well-known/oauth-protected-resource`);
      expect(await res.body.json()).toEqual({
        resource: 'http://mcp.test:8080',
        authorization_servers: [issuer.issuer],
        bearer_methods_supported: ['header'],
      });
    } finally {
      await plain.close();
    }
  });
});
