import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, type RunningSidecar } from '../helpers/sidecar.js';

const RESOURCE = 'https://datastore-mcp.example.com/mcp';

/** A real OpenID provider on port 0 that issues JWT access tokens for RESOURCE by client credentials. */
async function startProvider(): Promise<{ issuer: string; server: Server; token(): Promise<string> }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const provider = new Provider(issuer, {
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'op-key', alg: 'RS256', use: 'sig' }] },
    ttl: { ClientCredentials: 300 },
    clients: [
      { client_id: 'coder', client_secret: 'coder-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
    ],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({ scope: 'datastore', audience: RESOURCE, accessTokenFormat: 'jwt', accessTokenTTL: 300 }),
      },
    },
  });
  server.on('request', provider.callback());
  return {
    issuer,
    server,
    async token() {
      const res = await request(`${issuer}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from('coder:coder-secret').toString('base64')}`,
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource: RESOURCE, scope: 'datastore' }).toString(),
      });
      const body = (await res.body.json()) as { access_token?: string };
      if (!body.access_token) throw new Error(`no access token: ${JSON.stringify(body)}`);
      return body.access_token;
    },
  };
}

describe('a real OpenID provider (oidc-provider)', () => {
  let op: Awaited<ReturnType<typeof startProvider>>;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  const env = () => ({
    OIDC_ISSUER: op.issuer,
    OIDC_AUDIENCES: RESOURCE,
    OIDC_USER_CLAIM: 'client_id',
    UPSTREAM_URL: upstream.url,
    PORT: '0',
    ADMIN_PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
  });

  beforeAll(async () => {
    op = await startProvider();
    upstream = await startUpstream();
  });
  afterAll(async () => {
    await upstream.close();
    op.server.closeAllConnections();
    await new Promise((resolve) => op.server.close(resolve));
  });

  it('issues an access token the sidecar accepts, with keys found through discovery', async () => {
    // oidc-provider's JWT access tokens (RFC 9068) carry no Keycloak typ claim.
    sidecar = await startSidecar({ ...env(), OIDC_TOKEN_TYPE: '' });
    try {
      const token = await op.token();
      const res = await request(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toEqual({ ok: true, user: 'coder' });
      expect(sidecar.app.keys.status()).toMatchObject({ loaded: true, keys: 1 });
    } finally {
      await sidecar.close();
    }
  });

  it('rejects the same token as wrong_token_type when a Keycloak typ is required (the default)', async () => {
    sidecar = await startSidecar(env());
    try {
      const res = await request(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${await op.token()}` } });
      expect(res.statusCode).toBe(401);
      expect(((await res.body.json()) as { reason: string }).reason).toBe('wrong_token_type');
    } finally {
      await sidecar.close();
    }
  });
});
