// DPoP against a real Keycloak 26 (started once per run by helpers/stack-setup.ts): a client with
// "require DPoP bound tokens" gets a DPoP-bound token through a real grant (the password grant,
// with a proof for Keycloak's token endpoint), and the sidecar accepts it only with fresh proofs
// of that key for its own URL. The replay across replicas goes through a real Redis.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { admin, importRealm, useKeycloak, type Realm } from '../helpers/keycloak.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { createDpopKey, createProof, type DpopKey } from '../helpers/dpop.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { findTool } from '../helpers/tools.js';

const keycloak = useKeycloak();
const redisServer = findTool('redis-server');

const HTU = 'http://mcp.test:8080/mcp';
const AGENT = { clientId: 'mcp-agent', secret: 'mcp-agent-secret' };
const claims = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as Record<string, any>;

/** The password grant with a DPoP proof for the token endpoint: Keycloak binds the token to `key`. */
async function dpopToken(realm: Realm, key: DpopKey, user = 'alice'): Promise<{ access_token: string; token_type: string }> {
  const endpoint = `${realm.issuer}/protocol/openid-connect/token`;
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: { dpop: await createProof(key, { htm: 'POST', htu: endpoint }) },
    body: new URLSearchParams({
      grant_type: 'password',
      client_id: AGENT.clientId,
      client_secret: AGENT.secret,
      username: user,
      password: `${user}-password`,
      scope: 'openid',
    }),
  });
  if (!response.ok) throw new Error(`token endpoint: ${response.status} ${await response.text()}`);
  return (await response.json()) as { access_token: string; token_type: string };
}

async function send(url: string, authorization: string, proofs: string[] = [], method: 'POST' | 'GET' = 'POST', path = '/mcp') {
  const res = await request(`${url}${path}`, {
    method,
    headers: ['content-type', 'application/json', 'authorization', authorization, ...proofs.flatMap((p) => ['dpop', p])],
    body: method === 'POST' ? '{"jsonrpc":"2.0","id":1,"method":"ping"}' : undefined,
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    reason: res.statusCode === 200 ? undefined : (JSON.parse(text) as { reason: string }).reason,
    nonce: res.headers['dpop-nonce'] as string | undefined,
  };
}

/** Adds the client that requires DPoP-bound tokens, through Keycloak's admin REST API. */
async function addDpopClient(realm: Realm): Promise<void> {
  await admin('POST', `/${realm.name}/clients`, {
    clientId: AGENT.clientId,
    enabled: true,
    protocol: 'openid-connect',
    publicClient: false,
    secret: AGENT.secret,
    standardFlowEnabled: false,
    directAccessGrantsEnabled: true,
    // "Require DPoP bound tokens" in the admin console.
    attributes: { 'dpop.bound.access.tokens': 'true' },
    defaultClientScopes: ['basic', 'acr', 'web-origins', 'profile', 'roles', 'email', 'groups'],
  });
}

describe.skipIf(!keycloak)('Keycloak 26 DPoP-bound tokens', () => {
  let realm: Realm;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let key: DpopKey;
  let token: string;
  const proof = (options: Partial<Parameters<typeof createProof>[1]> = {}, withKey = key) =>
    createProof(withKey, { htm: 'POST', htu: HTU, token, ...options });

  beforeAll(async () => {
    realm = await importRealm('dpop');
    await addDpopClient(realm);
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(realm, upstream, { OIDC_ALLOWED_AZP: 'coder,mcp-agent', DPOP: 'allow' }));
    key = await createDpopKey('ES256');
    token = (await dpopToken(realm, key)).access_token;
  }, 300_000);
  afterAll(async () => {
    await sidecar?.close();
    await upstream?.close();
  });

  it('binds the token to the key: typ DPoP, cnf.jkt the key thumbprint, token_type DPoP; and refuses the grant without a proof', async () => {
    const answer = await dpopToken(realm, key);
    expect(answer.token_type).toBe('DPoP');
    expect(claims(answer.access_token)).toMatchObject({
      typ: 'DPoP',
      cnf: { jkt: key.jkt },
      azp: 'mcp-agent',
      preferred_username: 'alice',
    });
    const withoutProof = await fetch(`${realm.issuer}/protocol/openid-connect/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'password',
        client_id: AGENT.clientId,
        client_secret: AGENT.secret,
        username: 'alice',
        password: 'alice-password',
      }),
    });
    expect(withoutProof.status).toBe(400);
  });

  it('accepts the token with a fresh proof on each request', async () => {
    for (let i = 0; i < 3; i++) expect(await send(sidecar.url, `DPoP ${token}`, [await proof()])).toMatchObject({ status: 200 });
    expect(upstream.seen.at(-1)!.headers['x-verified-user']).toBe('alice');
    expect(upstream.seen.at(-1)!.headers.authorization).toBeUndefined();
    expect(upstream.seen.at(-1)!.headers.dpop).toBeUndefined();
  });

  it('refuses, each with its reason: a replayed proof, another URL, another method, another key, no proof, Bearer, an expired proof', async () => {
    const once = await proof();
    expect((await send(sidecar.url, `DPoP ${token}`, [once])).status).toBe(200);
    expect((await send(sidecar.url, `DPoP ${token}`, [once])).reason).toBe('dpop_replay');
    expect((await send(sidecar.url, `DPoP ${token}`, [await proof({ htu: 'http://mcp.test:8080/elsewhere' })])).reason).toBe(
      'invalid_dpop_proof',
    );
    expect((await send(sidecar.url, `DPoP ${token}`, [await proof({ htm: 'GET' })])).reason).toBe('invalid_dpop_proof');
    expect((await send(sidecar.url, `DPoP ${token}`, [await proof({}, await createDpopKey())])).reason).toBe('dpop_binding_mismatch');
    expect((await send(sidecar.url, `DPoP ${token}`, [])).reason).toBe('invalid_dpop_proof');
    expect((await send(sidecar.url, `Bearer ${token}`, [await proof()])).reason).toBe('dpop_binding_mismatch');
    expect((await send(sidecar.url, `DPoP ${token}`, [await proof({ iat: Math.floor(Date.now() / 1000) - 300 })])).reason).toBe(
      'invalid_dpop_proof',
    );
    // The proof Keycloak saw for its token endpoint is not a proof for the sidecar.
    const endpoint = `${realm.issuer}/protocol/openid-connect/token`;
    expect((await send(sidecar.url, `DPoP ${token}`, [await createProof(key, { htm: 'POST', htu: endpoint, token })])).reason).toBe(
      'invalid_dpop_proof',
    );
  });

  it('require: the same token passes, a plain bearer token of the coder client is dpop_required', async () => {
    const strict = await startSidecar(testEnv(realm, upstream, { OIDC_ALLOWED_AZP: 'coder,mcp-agent', DPOP: 'require' }));
    try {
      expect((await send(strict.url, `DPoP ${token}`, [await proof()])).status).toBe(200);
      const bearer = (await realm.tokens('alice')).access_token;
      expect(claims(bearer).typ).toBe('Bearer');
      expect((await send(strict.url, `Bearer ${bearer}`)).reason).toBe('dpop_required');
    } finally {
      await strict.close();
    }
  });

  it('nonce: the client gets one with use_dpop_nonce, and succeeds on the retry', async () => {
    const noncing = await startSidecar(testEnv(realm, upstream, { OIDC_ALLOWED_AZP: 'mcp-agent', DPOP: 'require', DPOP_NONCE: 'on' }));
    try {
      const first = await send(noncing.url, `DPoP ${token}`, [await proof()]);
      expect(first).toMatchObject({ status: 401, reason: 'use_dpop_nonce' });
      expect(first.nonce).toBeDefined();
      const retry = await send(noncing.url, `DPoP ${token}`, [await proof({ nonce: first.nonce })]);
      expect(retry.status).toBe(200);
    } finally {
      await noncing.close();
    }
  });

  describe.skipIf(!redisServer)('across two replicas sharing a real Redis', () => {
    let redis: TestRedis;
    let a: RunningSidecar;
    let b: RunningSidecar;
    let alone: RunningSidecar;

    beforeAll(async () => {
      redis = await startRedis();
      const env = { OIDC_ALLOWED_AZP: 'mcp-agent', DPOP: 'require', REDIS_URL: redis.url, REDIS_KEY_PREFIX: `dpop-${Date.now()}` };
      a = await startSidecar(testEnv(realm, upstream, env));
      b = await startSidecar(testEnv(realm, upstream, env));
      // A third replica without Redis: what a replay to another replica would do without it.
      alone = await startSidecar(testEnv(realm, upstream, { OIDC_ALLOWED_AZP: 'mcp-agent', DPOP: 'require' }));
    }, 60_000);
    afterAll(async () => {
      await a?.close();
      await b?.close();
      await alone?.close();
      await redis?.close();
    });

    it('refuses at the other replica a proof one replica accepted (dpop_replay); without Redis the other replica could not tell', async () => {
      const once = await proof();
      expect((await send(a.url, `DPoP ${token}`, [once])).status).toBe(200);
      expect((await send(b.url, `DPoP ${token}`, [once])).reason).toBe('dpop_replay');
      expect((await send(alone.url, `DPoP ${token}`, [once])).status).toBe(200);
    });

    it('with nonces: a nonce from one replica is good at the other', async () => {
      const env = {
        OIDC_ALLOWED_AZP: 'mcp-agent',
        DPOP: 'require',
        DPOP_NONCE: 'on',
        REDIS_URL: redis.url,
        REDIS_KEY_PREFIX: `nonce-${Date.now()}`,
      };
      const one = await startSidecar(testEnv(realm, upstream, env));
      const two = await startSidecar(testEnv(realm, upstream, env));
      try {
        const { nonce } = await send(one.url, `DPoP ${token}`, [await proof()]);
        expect(nonce).toBeDefined();
        expect((await send(two.url, `DPoP ${token}`, [await proof({ nonce })])).status).toBe(200);
      } finally {
        await one.close();
        await two.close();
      }
    });

    it('Redis down: proofs are checked by each replica alone, counted; back up: shared again', async () => {
      await redis.stop();
      try {
        const once = await proof();
        expect((await send(a.url, `DPoP ${token}`, [once])).status).toBe(200);
        expect((await send(a.url, `DPoP ${token}`, [once])).reason).toBe('dpop_replay');
        const metrics = await (await fetch(`${a.adminUrl}/metrics`)).text();
        expect(Number(/^mcp_auth_dpop_redis_errors_total (\d+)/m.exec(metrics)![1])).toBeGreaterThanOrEqual(1);
      } finally {
        await redis.start();
      }
      const deadline = Date.now() + 10_000;
      for (;;) {
        const once = await proof();
        expect((await send(a.url, `DPoP ${token}`, [once])).status).toBe(200);
        if ((await send(b.url, `DPoP ${token}`, [once])).reason === 'dpop_replay') break;
        if (Date.now() > deadline) throw new Error('replicas did not share proofs again within 10 s of Redis returning');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    });
  });
});
