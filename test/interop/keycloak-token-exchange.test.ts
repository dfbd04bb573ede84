// UPSTREAM_TOKEN=exchange against a real Keycloak 26 (standard token exchange, RFC 8693): the
// upstream receives a token whose audience is its own client and whose subject is the user, never
// the client's token; one exchange per client token under load; Keycloak down (a TCP relay in
// front of it, stopped and started again) is a 502 for tokens not exchanged yet, while tokens
// exchanged before keep working from the cache. Two realms: each realm's token exchanged by that
// realm, with that realm's sidecar client.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { admin, CODER_CLIENT_SECRET, importRealm, useKeycloak, type Realm } from '../helpers/keycloak.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { createDpopKey, createProof } from '../helpers/dpop.js';
import { captureLog } from '../helpers/log-capture.js';

const keycloak = useKeycloak();

const SIDECAR = { clientId: 'mcp-sidecar', secret: 'mcp-sidecar-secret' };
const UPSTREAM_CLIENT = 'datastore-upstream';
const claims = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as Record<string, any>;

const audienceMapper = (audience: string) => ({
  name: `audience-${audience}`,
  protocol: 'openid-connect',
  protocolMapper: 'oidc-audience-mapper',
  config: { 'included.client.audience': audience, 'access.token.claim': 'true', 'id.token.claim': 'false' },
});

/**
 * The clients of an exchange, through Keycloak's admin REST API: the upstream's (the audience),
 * the sidecar's (allowed to exchange, and to ask for the upstream's audience), and the coder
 * client's tokens made for the sidecar too (Keycloak exchanges only tokens whose audience holds
 * the requesting client).
 */
async function addExchangeClients(realm: Realm, secret = SIDECAR.secret): Promise<void> {
  await admin('POST', `/${realm.name}/clients`, {
    clientId: UPSTREAM_CLIENT,
    enabled: true,
    publicClient: false,
    standardFlowEnabled: false,
    directAccessGrantsEnabled: false,
  });
  await admin('POST', `/${realm.name}/clients`, {
    clientId: SIDECAR.clientId,
    enabled: true,
    publicClient: false,
    secret,
    standardFlowEnabled: false,
    directAccessGrantsEnabled: false,
    // "Standard token exchange" in the admin console.
    attributes: { 'standard.token.exchange.enabled': 'true' },
    protocolMappers: [audienceMapper(UPSTREAM_CLIENT)],
  });
  const [coder] = (await admin('GET', `/${realm.name}/clients?clientId=coder`)) as { id: string }[];
  await admin('POST', `/${realm.name}/clients/${coder!.id}/protocol-mappers/models`, audienceMapper(SIDECAR.clientId));
}

/** A TCP relay to Keycloak that can be stopped and started on the same port: Keycloak "down" for whoever uses it. */
async function startRelay(targetPort: number): Promise<{ url: string; stop(): Promise<void>; start(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const start = () =>
    new Promise<void>((resolve) => {
      server = createServer((client) => {
        const target = connect(targetPort, '127.0.0.1');
        for (const socket of [client, target]) {
          sockets.add(socket);
          socket.on('close', () => sockets.delete(socket));
          socket.on('error', () => socket.destroy());
        }
        client.pipe(target).pipe(client);
      });
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as { port: number }).port;
        resolve();
      });
    });
  await start();
  return {
    url: `http://127.0.0.1:${port}`,
    start,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server!.close(() => resolve());
      }),
  };
}

/** A password-grant token of the coder client, taken at `base` (Keycloak, or the relay in front of it). */
async function coderToken(base: string, realm: string, user = 'alice'): Promise<string> {
  const response = await fetch(`${base}/realms/${realm}/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'password',
      client_id: 'coder',
      client_secret: CODER_CLIENT_SECRET,
      username: user,
      password: `${user}-password`,
      scope: 'openid',
    }),
  });
  if (!response.ok) throw new Error(`token endpoint: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { access_token: string }).access_token;
}

async function send(url: string, authorization: string, proof?: string) {
  const response = await fetch(`${url}/mcp`, {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/json', ...(proof === undefined ? {} : { dpop: proof }) },
    body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
  });
  const text = await response.text();
  return { status: response.status, reason: response.status === 200 ? undefined : (JSON.parse(text) as { reason: string }).reason };
}

async function exchanges(sidecar: RunningSidecar): Promise<{ success: number; failure: number }> {
  const text = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
  const count = (result: string) =>
    Number(new RegExp(`^mcp_auth_token_exchanges_total\\{result="${result}"\\} (\\d+)`, 'm').exec(text)![1]);
  return { success: count('success'), failure: count('failure') };
}

describe.skipIf(!keycloak)('Keycloak 26 standard token exchange for the upstream', () => {
  let realm: Realm;
  let upstream: TestUpstream;
  let secretFile: string;
  const sidecars: RunningSidecar[] = [];
  const exchangeEnv = () => ({
    UPSTREAM_TOKEN: 'exchange',
    TOKEN_EXCHANGE_AUDIENCE: UPSTREAM_CLIENT,
    TOKEN_EXCHANGE_CLIENT_ID: SIDECAR.clientId,
    TOKEN_EXCHANGE_CLIENT_SECRET_FILE: secretFile,
  });

  beforeAll(async () => {
    realm = await importRealm('exchange');
    await addExchangeClients(realm);
    upstream = await startUpstream();
    secretFile = join(mkdtempSync(join(tmpdir(), 'kc-exchange-')), 'client-secret');
    writeFileSync(secretFile, `${SIDECAR.secret}\n`);
  }, 300_000);
  afterAll(async () => {
    for (const sidecar of sidecars) await sidecar.close();
    await upstream?.close();
  });

  it("gives the upstream a token for its own audience, whose subject is the user, never the client's token", async () => {
    const sidecar = await startSidecar(testEnv(realm, upstream, exchangeEnv()));
    sidecars.push(sidecar);
    const token = (await realm.tokens('alice')).access_token;
    expect(claims(token).aud).toContain(SIDECAR.clientId);
    const before = upstream.seen.length;
    expect(await send(sidecar.url, `Bearer ${token}`)).toEqual({ status: 200, reason: undefined });
    const authorization = upstream.seen[before]!.headers.authorization!;
    expect(authorization).toMatch(/^Bearer /);
    const exchanged = authorization.slice('Bearer '.length);
    expect(exchanged).not.toBe(token);
    const given = claims(token);
    const got = claims(exchanged);
    expect(got.aud === UPSTREAM_CLIENT || (Array.isArray(got.aud) && got.aud.length === 1 && got.aud[0] === UPSTREAM_CLIENT)).toBe(true);
    expect(got).toMatchObject({ sub: given.sub, azp: SIDECAR.clientId, iss: realm.issuer, typ: 'Bearer', preferred_username: 'alice' });
    expect(got.exp).toBeLessThanOrEqual(given.exp + 1);
    expect(upstream.seen[before]!.headers['x-verified-user']).toBe('alice');
  });

  it('exchanges once per client token under load (40 concurrent requests, then 40 more)', async () => {
    const sidecar = await startSidecar(testEnv(realm, upstream, exchangeEnv()));
    sidecars.push(sidecar);
    const tokens = [(await realm.tokens('alice')).access_token, (await realm.tokens('bob')).access_token];
    const round = () => Promise.all(Array.from({ length: 40 }, (_, i) => send(sidecar.url, `Bearer ${tokens[i % 2]}`)));
    expect((await round()).every((r) => r.status === 200)).toBe(true);
    expect((await round()).every((r) => r.status === 200)).toBe(true);
    expect(await exchanges(sidecar)).toEqual({ success: 2, failure: 0 });
  });

  it('a wrong client secret is a 502 (Keycloak refuses); the right one written to the file is used without a restart', async () => {
    writeFileSync(secretFile, 'not-the-secret\n');
    try {
      const sidecar = await startSidecar(testEnv(realm, upstream, exchangeEnv()));
      sidecars.push(sidecar);
      expect(await send(sidecar.url, `Bearer ${(await realm.tokens('alice')).access_token}`)).toEqual({
        status: 502,
        reason: 'token_exchange_failed',
      });
      writeFileSync(secretFile, `${SIDECAR.secret}\n`);
      const deadline = Date.now() + 10_000;
      while ((await send(sidecar.url, `Bearer ${(await realm.tokens('alice')).access_token}`)).status !== 200) {
        if (Date.now() > deadline) throw new Error('the new secret was not used within 10 s');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      writeFileSync(secretFile, `${SIDECAR.secret}\n`);
    }
  });

  it("two realms: each realm's token is exchanged by that realm with its own client, and the upstream gets that realm's token", async () => {
    const contractors = await importRealm('exchange-contractors');
    try {
      await addExchangeClients(contractors, 'contractors-sidecar-secret');
      const dir = mkdtempSync(join(tmpdir(), 'kc-exchange-realms-'));
      const contractorsSecret = join(dir, 'contractors-secret');
      writeFileSync(contractorsSecret, 'contractors-sidecar-secret\n');
      const issuersFile = join(dir, 'issuers.yaml');
      writeFileSync(
        issuersFile,
        `- issuer: ${contractors.issuer}\n  allowedAzp: [coder]\n  tokenExchange:\n    audience: ${UPSTREAM_CLIENT}\n    clientId: ${SIDECAR.clientId}\n    clientSecretFile: ${contractorsSecret}\n`,
      );
      const sidecar = await startSidecar(testEnv(realm, upstream, { ...exchangeEnv(), ISSUERS_FILE: issuersFile }));
      sidecars.push(sidecar);
      for (const [from, user] of [
        [contractors, 'bob'],
        [realm, 'alice'],
      ] as const) {
        const token = (await from.tokens(user)).access_token;
        const before = upstream.seen.length;
        expect(await send(sidecar.url, `Bearer ${token}`)).toEqual({ status: 200, reason: undefined });
        const got = claims(upstream.seen[before]!.headers.authorization!.slice('Bearer '.length));
        // Keycloak mints only for its own clients: the secrets differ, so each realm was asked with its own.
        expect(got).toMatchObject({ iss: from.issuer, sub: claims(token).sub, azp: SIDECAR.clientId, preferred_username: user });
      }
      expect(await exchanges(sidecar)).toEqual({ success: 2, failure: 0 });
    } finally {
      await contractors.delete();
    }
  });

  it('Keycloak down: a token not exchanged yet gets 502 token_exchange_failed (counted); exchanged ones keep working; back up, all pass', async () => {
    const relay = await startRelay(Number(new URL(keycloak!.url).port));
    const issuer = { issuer: `${relay.url}/realms/${realm.name}` };
    const sidecar = await startSidecar(testEnv(issuer, upstream, exchangeEnv()));
    sidecars.push(sidecar);
    const known = await coderToken(relay.url, realm.name, 'alice');
    const fresh = await coderToken(relay.url, realm.name, 'bob');
    expect(claims(known).iss).toBe(issuer.issuer);
    expect((await send(sidecar.url, `Bearer ${known}`)).status).toBe(200);
    await relay.stop();
    try {
      expect(await send(sidecar.url, `Bearer ${fresh}`)).toEqual({ status: 502, reason: 'token_exchange_failed' });
      expect((await send(sidecar.url, `Bearer ${known}`)).status).toBe(200);
      expect((await exchanges(sidecar)).failure).toBe(1);
    } finally {
      await relay.start();
    }
    expect((await send(sidecar.url, `Bearer ${fresh}`)).status).toBe(200);
    await relay.stop();
  });

  it("a DPoP-bound client token: Keycloak will not exchange it for another client, so 502, and the log says Keycloak's reason", async () => {
    // A client that asks for DPoP-bound tokens, whose tokens are made for the sidecar as well.
    await admin('POST', `/${realm.name}/clients`, {
      clientId: 'mcp-agent',
      enabled: true,
      publicClient: false,
      secret: 'mcp-agent-secret',
      standardFlowEnabled: false,
      directAccessGrantsEnabled: true,
      attributes: { 'dpop.bound.access.tokens': 'true' },
      protocolMappers: [audienceMapper(SIDECAR.clientId)],
    });
    const key = await createDpopKey();
    const endpoint = `${realm.issuer}/protocol/openid-connect/token`;
    const response = await fetch(endpoint, {
      method: 'POST',
      headers: { dpop: await createProof(key, { htm: 'POST', htu: endpoint }) },
      body: new URLSearchParams({
        grant_type: 'password',
        client_id: 'mcp-agent',
        client_secret: 'mcp-agent-secret',
        username: 'alice',
        password: 'alice-password',
      }),
    });
    const token = ((await response.json()) as { access_token: string }).access_token;
    expect(claims(token).cnf).toMatchObject({ jkt: key.jkt });
    expect(claims(token).aud).toContain(SIDECAR.clientId);
    const log = captureLog('warn');
    const sidecar = await startSidecar(testEnv(realm, upstream, { ...exchangeEnv(), DPOP: 'allow', OIDC_ALLOWED_AZP: 'mcp-agent' }), {
      logger: log.logger,
    });
    sidecars.push(sidecar);
    const before = upstream.seen.length;
    const answer = await send(
      sidecar.url,
      `DPoP ${token}`,
      await createProof(key, { htm: 'POST', htu: 'http://mcp.test:8080/mcp', token }),
    );
    expect(answer).toEqual({ status: 502, reason: 'token_exchange_failed' });
    expect(upstream.seen.length).toBe(before);
    expect(log.lines().find((line) => line.issuerError !== undefined)).toMatchObject({
      issuerError: 'invalid_request',
      issuerErrorDescription: expect.stringContaining('Sender-constrained token exchange rejected'),
    });
  });
});
