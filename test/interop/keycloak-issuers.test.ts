// Identity beyond one realm against the run's Keycloak 26: two realms trusted at once (each with
// its own rules), a token naming realm A under a kid that realm B publishes, a client with
// Keycloak's lightweight access tokens whose groups reach the tool policy only through token
// introspection (counted by a proxy in front of Keycloak's endpoint: one call per token), the
// introspection endpoint going down, and a token stepped up to the scope a call needs.
// Realms, clients and scopes are added through the admin REST API (importRealm's edit), beside
// examples/keycloak/realm-coder.json, which stays as it is.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync, createSign } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { admin, importRealm, useKeycloak, type Realm } from '../helpers/keycloak.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

const keycloak = useKeycloak();

const LIGHTWEIGHT_SECRET = 'lightweight-secret';
const SIDECAR_SECRET = 'sidecar-introspection-secret';

const POLICY = `rules:
  - name: alpha-queries
    effect: allow
    when: '"/alpha" in groups && mcp.method == "tools/call" && mcp.tool == "query"'
  - name: alpha-drops-with-write
    effect: allow
    when: '"/alpha" in groups && mcp.method == "tools/call" && mcp.tool == "drop"'
    scopes: [datastore.write]
  - name: realm-b-bravo-queries
    effect: allow
    when: 'token.iss.endsWith("/realms/identity-b") && "/bravo" in groups && mcp.tool == "query"'
`;

const claims = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as Record<string, any>;

/** Realm A's additions: an optional client scope `datastore.write` on coder, a lightweight-token client, the sidecar's introspection client. */
function realmA(realm: Record<string, any>): void {
  realm.clientScopes.push({
    name: 'datastore.write',
    protocol: 'openid-connect',
    attributes: { 'include.in.token.scope': 'true', 'display.on.consent.screen': 'false' },
  });
  const coder = realm.clients.find((c: { clientId: string }) => c.clientId === 'coder');
  coder.optionalClientScopes = [...coder.optionalClientScopes, 'datastore.write'];
  // Keycloak answers introspection only to a client in the token's audience: the sidecar's
  // introspection client is added to the audience of the tokens it may have to introspect (also
  // to a lightweight token's, which keeps only the claims marked lightweight).
  const sidecarAudience = {
    name: 'mcp-sidecar audience',
    protocol: 'openid-connect',
    protocolMapper: 'oidc-audience-mapper',
    config: {
      'included.client.audience': 'mcp-sidecar',
      'access.token.claim': 'true',
      'introspection.token.claim': 'true',
      'lightweight.claim': 'true',
    },
  };
  coder.protocolMappers = [...(coder.protocolMappers ?? []), sidecarAudience];
  realm.clients.push(
    {
      clientId: 'lightweight',
      enabled: true,
      publicClient: false,
      secret: LIGHTWEIGHT_SECRET,
      standardFlowEnabled: false,
      directAccessGrantsEnabled: true,
      defaultClientScopes: coder.defaultClientScopes,
      attributes: { 'client.use.lightweight.access.token.enabled': 'true' },
      protocolMappers: [sidecarAudience],
    },
    {
      clientId: 'mcp-sidecar',
      enabled: true,
      publicClient: false,
      secret: SIDECAR_SECRET,
      standardFlowEnabled: false,
      directAccessGrantsEnabled: false,
      serviceAccountsEnabled: false,
    },
  );
}

/** A proxy in front of Keycloak's introspection endpoint that counts the calls and can play dead. */
async function countingProxy(target: string): Promise<{ url: string; calls: string[]; down: boolean; close(): Promise<void> }> {
  const state = { calls: [] as string[], down: false };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      state.calls.push(new URLSearchParams(body).get('token') ?? '');
      if (state.down) {
        res.statusCode = 503;
        return void res.end('down');
      }
      fetch(target, {
        method: 'POST',
        headers: { authorization: req.headers.authorization ?? '', 'content-type': req.headers['content-type'] ?? '' },
        body,
      }).then(
        async (answer) => {
          res.statusCode = answer.status;
          res.setHeader('content-type', answer.headers.get('content-type') ?? 'application/json');
          res.end(await answer.text());
        },
        () => {
          res.statusCode = 502;
          res.end();
        },
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/introspect`,
    get calls() {
      return state.calls;
    },
    get down() {
      return state.down;
    },
    set down(value: boolean) {
      state.down = value;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe.skipIf(!keycloak)('identity beyond one realm, with Keycloak 26', () => {
  let a: Realm;
  let b: Realm;
  let upstream: TestUpstream;
  let proxy: Awaited<ReturnType<typeof countingProxy>>;
  let sidecar: RunningSidecar;
  const dir = mkdtempSync(join(tmpdir(), 'keycloak-issuers-'));

  beforeAll(async () => {
    a = await importRealm('identity-a', realmA);
    b = await importRealm('identity-b');
    upstream = await startUpstream();
    proxy = await countingProxy(`${a.issuer}/protocol/openid-connect/token/introspect`);
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    writeFileSync(join(dir, 'sidecar-secret'), `${SIDECAR_SECRET}\n`);
    // Realm B: its own rules (only /bravo), nothing of A's.
    writeFileSync(join(dir, 'issuers.yaml'), `- issuer: ${b.issuer}\n  allowedAzp: [coder]\n  requiredGroups: [/bravo]\n`);
    sidecar = await startSidecar(
      testEnv(a, upstream, {
        OIDC_ALLOWED_AZP: 'coder,lightweight',
        ISSUERS_FILE: join(dir, 'issuers.yaml'),
        POLICY_FILE: join(dir, 'policy.yaml'),
        OIDC_INTROSPECTION: 'missing-claims',
        OIDC_INTROSPECTION_ENDPOINT: proxy.url,
        OIDC_INTROSPECTION_CLIENT_ID: 'mcp-sidecar',
        OIDC_INTROSPECTION_CLIENT_SECRET_FILE: join(dir, 'sidecar-secret'),
        RESOURCE_URL: 'http://mcp.test:8080/mcp',
        JWKS_COOLDOWN_SECONDS: '0',
      }),
    );
  }, 300_000);

  afterAll(async () => {
    await sidecar?.close();
    await upstream?.close();
    await proxy?.close();
    await a?.delete().catch(() => undefined);
    await b?.delete().catch(() => undefined);
  });

  async function callTool(token: string, tool: string, id = 1) {
    const res = await fetch(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: tool, arguments: {} } }),
    });
    const body = await res.text();
    return { status: res.status, challenge: res.headers.get('www-authenticate'), body: JSON.parse(body) as Record<string, any> };
  }

  it("accepts a token of each realm under that realm's own rules", async () => {
    const alice = (await a.tokens('alice')).access_token;
    const first = await callTool(alice, 'query');
    expect(first.status === 200 ? 'accepted' : first.body).toBe('accepted');
    expect(upstream.seen.at(-1)!.headers).toMatchObject({ 'x-verified-user': 'alice', 'x-verified-issuer': a.issuer });

    const bobB = (await b.tokens('bob')).access_token;
    expect(await callTool(bobB, 'query')).toMatchObject({ status: 200 });
    expect(upstream.seen.at(-1)!.headers).toMatchObject({ 'x-verified-user': 'bob', 'x-verified-issuer': b.issuer });
    // alice of realm B is not in /bravo: realm B's required group refuses her.
    expect(await callTool((await b.tokens('alice')).access_token, 'query')).toMatchObject({ status: 403, body: { reason: 'forbidden' } });
    // bob of realm A passes realm A's rules but not the policy (no rule lets /bravo of realm A query).
    expect((await callTool((await a.tokens('bob')).access_token, 'query')).body).toMatchObject({ error: { code: -32003 } });

    const metadata = await (await fetch(`${sidecar.url}/.well-known/oauth-protected-resource/mcp`)).json();
    expect(metadata).toMatchObject({ authorization_servers: [a.issuer, b.issuer] });
  });

  it("refuses a token naming realm A under a kid of realm B's, signed by realm B's key", async () => {
    // A key the test holds, imported into realm B as its active signing key: B publishes it under
    // the kid Keycloak gives it, and signs B's tokens with it.
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const realmId = ((await admin('GET', `/${b.name}`)) as { id: string }).id;
    await admin('POST', `/${b.name}/components`, {
      name: 'test-held-key',
      providerId: 'rsa',
      providerType: 'org.keycloak.keys.KeyProvider',
      parentId: realmId,
      config: {
        priority: ['500'],
        enabled: ['true'],
        active: ['true'],
        algorithm: ['RS256'],
        privateKey: [privateKey.export({ format: 'pem', type: 'pkcs1' }).toString()],
      },
    });
    const held = (await b.signingKeys()).find((k) => k.name === 'test-held-key')!;
    const bToken = (await b.tokens('bob')).access_token;
    expect(JSON.parse(Buffer.from(bToken.split('.')[0]!, 'base64url').toString())).toMatchObject({ kid: held.kid });
    expect(await callTool(bToken, 'query')).toMatchObject({ status: 200 });

    // Realm A's real token, its payload re-signed with realm B's key under realm B's kid.
    const aToken = (await a.tokens('alice')).access_token;
    const header = Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: held.kid })).toString('base64url');
    const input = `${header}.${aToken.split('.')[1]}`;
    const forged = `${input}.${createSign('RSA-SHA256').update(input).sign(privateKey).toString('base64url')}`;
    expect(claims(forged).iss).toBe(a.issuer);
    expect(await callTool(forged, 'query')).toMatchObject({ status: 401, body: { reason: 'unknown_key' } });
    // The same payload claiming realm B instead is B's to judge, and B's key does verify it.
    const asB = { ...claims(aToken), iss: b.issuer };
    const inputB = `${header}.${Buffer.from(JSON.stringify(asB)).toString('base64url')}`;
    const signedB = `${inputB}.${createSign('RSA-SHA256').update(inputB).sign(privateKey).toString('base64url')}`;
    // …and is refused by B's rules (alice is not in /bravo), not by any key of A.
    expect(await callTool(signedB, 'query')).toMatchObject({ status: 403, body: { reason: 'forbidden' } });
  });

  it('fills in the groups of a lightweight token by introspection, once per token, and the policy judges them', async () => {
    const { access_token: token } = await a.tokens('alice', { clientId: 'lightweight', clientSecret: LIGHTWEIGHT_SECRET });
    const lightweight = claims(token);
    expect(lightweight).toMatchObject({ azp: 'lightweight', typ: 'Bearer' });
    expect(lightweight.groups).toBeUndefined();
    expect(lightweight.preferred_username).toBeUndefined();
    const before = proxy.calls.length;
    const answers = await Promise.all([1, 2, 3, 4].map((id) => callTool(token, 'query', id)));
    for (let id = 5; id <= 8; id++) answers.push(await callTool(token, 'query', id));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200, 200, 200]);
    expect(proxy.calls.slice(before)).toEqual([token]);
    expect(upstream.seen.at(-1)!.headers).toMatchObject({ 'x-verified-user': 'alice', 'x-verified-groups': '/alpha' });
    // The policy saw /alpha, which only introspection told: bob's lightweight token is denied.
    const bob = (await a.tokens('bob', { clientId: 'lightweight', clientSecret: LIGHTWEIGHT_SECRET })).access_token;
    expect((await callTool(bob, 'query')).body).toMatchObject({ error: { code: -32003 } });
    expect(upstream.seen.at(-1)!.headers['x-verified-user']).toBe('alice');
  });

  it('introspection down: an introspected token goes on working, a new one gets 503, and both work once it is back', async () => {
    const seen = (await a.tokens('alice', { clientId: 'lightweight', clientSecret: LIGHTWEIGHT_SECRET })).access_token;
    expect((await callTool(seen, 'query')).status).toBe(200);
    proxy.down = true;
    try {
      const fresh = (await a.tokens('alice', { clientId: 'lightweight', clientSecret: LIGHTWEIGHT_SECRET })).access_token;
      expect((await callTool(seen, 'query', 2)).status).toBe(200);
      const refused = await callTool(fresh, 'query', 3);
      expect(refused).toMatchObject({ status: 503, body: { reason: 'introspection_unavailable' } });
      // A full token needs no introspection: unaffected.
      expect((await callTool((await a.tokens('alice')).access_token, 'query', 4)).status).toBe(200);
      proxy.down = false;
      expect((await callTool(fresh, 'query', 5)).status).toBe(200);
    } finally {
      proxy.down = false;
    }
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`mcp_auth_introspection_requests_total\\{issuer="${a.issuer}",result="error"\\} [1-9]`));
  });

  it('a token without the scope a call needs is stepped up by a client that reads the challenge', async () => {
    let scope = '';
    let token = (await a.tokens('alice')).access_token;
    expect(claims(token).scope).not.toContain('datastore.write');
    let answer = await callTool(token, 'drop', 11);
    expect(answer.status).toBe(403);
    expect(answer.challenge).toBe(
      'Bearer error="insufficient_scope", scope="datastore.write", resource_metadata="http://mcp.test:8080/.well-known/oauth-protected-resource/mcp", error_description="the token lacks a scope this request needs (datastore.write)"',
    );
    // What the spec asks of the client: parse the challenge, ask for its scopes (beside those it
    // asked for before), retry, a bounded number of times.
    for (let attempt = 0; answer.status === 403 && attempt < 2; attempt++) {
      const named = /scope="([^"]*)"/.exec(answer.challenge ?? '')?.[1] ?? '';
      scope = [...new Set([...scope.split(' '), ...named.split(' ')])].filter(Boolean).join(' ');
      token = (await a.tokens('alice', { scope })).access_token;
      answer = await callTool(token, 'drop', 12);
    }
    expect(answer.status).toBe(200);
    expect(claims(token).scope.split(' ')).toContain('datastore.write');
    expect(JSON.parse(upstream.seen.at(-1)!.body)).toMatchObject({ id: 12, params: { name: 'drop' } });
  });
});
