// The sidecar against a real Keycloak 26 (started once per run by helpers/stack-setup.ts) with
// the realm of examples/keycloak/realm-coder.json: real access, ID and refresh tokens from its
// token endpoint, lifespans and signing keys changed through its admin REST API.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importRealm, useKeycloak, type Realm } from '../helpers/keycloak.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

const keycloak = useKeycloak();

const claims = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as Record<string, any>;
const header = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString()) as Record<string, any>;

async function send(url: string, token: string): Promise<{ status: number; reason?: string }> {
  const response = await fetch(`${url}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
  });
  const body = await response.text();
  return { status: response.status, ...(response.status === 200 ? {} : { reason: (JSON.parse(body) as { reason: string }).reason }) };
}

describe.skipIf(!keycloak)('Keycloak 26 tokens', () => {
  let realm: Realm;
  let upstream: TestUpstream;
  const sidecars: RunningSidecar[] = [];
  const sidecar = async (extra: Record<string, string> = {}) => {
    const started = await startSidecar(testEnv(realm, upstream, extra));
    sidecars.push(started);
    return started;
  };

  beforeAll(async () => {
    realm = await importRealm('coder');
    upstream = await startUpstream();
  }, 300_000);

  afterAll(async () => {
    for (const s of sidecars) await s.close();
    await upstream?.close();
  });

  it('accepts an access token of the coder client and sends the upstream its X-Verified-* headers', async () => {
    const { url } = await sidecar();
    // bob's address is not verified in the realm (email_verified false): no X-Verified-Email for him.
    for (const [user, email, groups] of [
      ['alice', 'alice@example.com', '/alpha'],
      ['bob', undefined, '/bravo'],
    ] as const) {
      const { access_token } = await realm.tokens(user);
      const token = claims(access_token);
      expect(token).toMatchObject({
        azp: 'coder',
        typ: 'Bearer',
        preferred_username: user,
        groups: [groups],
        email_verified: email !== undefined,
      });
      expect(await send(url, access_token)).toEqual({ status: 200 });
      const seen = upstream.seen.at(-1)!.headers;
      expect(seen['x-verified-user']).toBe(user);
      expect(seen['x-verified-subject']).toBe(token.sub);
      expect(seen['x-verified-email']).toBe(email);
      expect(seen['x-verified-groups']).toBe(groups);
      expect(seen.authorization).toBeUndefined();
    }
  });

  it("refuses Keycloak's ID token (wrong_token_type) and refresh token (HS512: unsupported_algorithm)", async () => {
    const { url } = await sidecar();
    const { id_token, refresh_token } = await realm.tokens('alice');
    expect(claims(id_token)).toMatchObject({ typ: 'ID', azp: 'coder', aud: 'coder' });
    expect(await send(url, id_token)).toEqual({ status: 401, reason: 'wrong_token_type' });
    // Keycloak signs refresh tokens with the realm's HMAC key: refused before typ is looked at.
    expect(claims(refresh_token).typ).toBe('Refresh');
    expect(header(refresh_token).alg).toBe('HS512');
    expect(await send(url, refresh_token)).toEqual({ status: 401, reason: 'unsupported_algorithm' });
  });

  it('refuses an access token past its lifespan (realm lifespan shortened to 1 s)', async () => {
    const { url } = await sidecar({ OIDC_CLOCK_TOLERANCE_SECONDS: '0' });
    await realm.update({ accessTokenLifespan: 1 });
    try {
      const { access_token, expires_in } = await realm.tokens('alice');
      // Keycloak rounds expires_in down: 0 when the answer took part of the second.
      expect(expires_in).toBeLessThanOrEqual(1);
      const { exp } = claims(access_token);
      // Waiting for the clock is the point here: the token's own exp, plus a second for its rounding.
      const waitMs = exp * 1000 + 1000 - Date.now();
      expect(waitMs).toBeLessThan(3000);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, waitMs)));
      expect(await send(url, access_token)).toEqual({ status: 401, reason: 'expired' });
    } finally {
      await realm.update({ accessTokenLifespan: 300 });
    }
  });

  it('with the datastore-mcp audience scope: OIDC_AUDIENCES=datastore-mcp and no azp rule accepts it, and only it', async () => {
    const { url } = await sidecar({ OIDC_ALLOWED_AZP: '', OIDC_AUDIENCES: 'datastore-mcp' });
    const scoped = (await realm.tokens('alice', { scope: 'datastore-mcp' })).access_token;
    expect(claims(scoped).aud).toContain('datastore-mcp');
    expect(await send(url, scoped)).toEqual({ status: 200 });
    expect(upstream.seen.at(-1)!.headers['x-verified-user']).toBe('alice');
    const plain = (await realm.tokens('alice')).access_token;
    expect(claims(plain).aud ?? []).not.toContain('datastore-mcp');
    expect(await send(url, plain)).toEqual({ status: 401, reason: 'wrong_audience' });
  });

  it("loads Keycloak's JWKS with its RSA-OAEP enc key and never verifies with that key", async () => {
    const { url } = await sidecar();
    const jwks = (await (await fetch(realm.jwksUri)).json()) as { keys: { kid: string; use: string; alg: string }[] };
    const enc = jwks.keys.find((k) => k.use === 'enc');
    expect(enc?.alg).toBe('RSA-OAEP');
    const { access_token } = await realm.tokens('alice');
    expect(await send(url, access_token)).toEqual({ status: 200 });
    // The same token claiming the enc key: not a signing key, so unknown, not a signature check.
    const [, payload, signature] = access_token.split('.');
    const claimingEnc = `${Buffer.from(JSON.stringify({ ...header(access_token), kid: enc!.kid })).toString('base64url')}.${payload}.${signature}`;
    expect(await send(url, claimingEnc)).toEqual({ status: 401, reason: 'unknown_key' });
  });

  it('accepts the user in 200 groups (an 8 KB token), and REQUIRED_GROUPS sees the last of them', async () => {
    const { access_token } = await realm.tokens('carol');
    const groups = claims(access_token).groups as string[];
    expect(groups).toHaveLength(201);
    expect(groups.join(',').length).toBeGreaterThan(4096);
    expect(access_token.length).toBeGreaterThan(8000);
    const { url } = await sidecar();
    expect(await send(url, access_token)).toEqual({ status: 200 });
    expect(upstream.seen.at(-1)!.headers['x-verified-user']).toBe('carol');
    // The whole list fits GROUPS_HEADER_MAX_BYTES (8192): every group reaches the upstream.
    expect(upstream.seen.at(-1)!.headers['x-verified-groups']).toBe(groups.join(','));
    expect(upstream.seen.at(-1)!.headers['x-verified-groups-truncated']).toBeUndefined();
    const restricted = await sidecar({ REQUIRED_GROUPS: '/departments/dept-200-datastore-readers' });
    expect(await send(restricted.url, access_token)).toEqual({ status: 200 });
    expect(await send(restricted.url, (await realm.tokens('alice')).access_token)).toEqual({ status: 403, reason: 'forbidden' });
  });
});

describe.skipIf(!keycloak)('Keycloak signing key rotation', () => {
  let realm: Realm;
  let upstream: TestUpstream;
  let steady: RunningSidecar;
  let refreshing: RunningSidecar;

  beforeAll(async () => {
    realm = await importRealm('coder-rotation');
    upstream = await startUpstream();
    // One sidecar with the default refresh (new keys come only through an unknown kid), one that
    // refreshes every second (a removed key goes at the next refresh).
    steady = await startSidecar(testEnv(realm, upstream));
    refreshing = await startSidecar(testEnv(realm, upstream, { JWKS_REFRESH_SECONDS: '1' }));
  }, 300_000);

  afterAll(async () => {
    await steady?.close();
    await refreshing?.close();
    await upstream?.close();
    // The realm goes with Keycloak's in-memory database at the end of the run (a delete is slow).
  }, 60_000);

  it('accepts new-key tokens at once, fails no request of a steady stream, and refuses the removed key after a refresh', async () => {
    const [original] = await realm.signingKeys();
    expect(original).toBeDefined();
    const oldToken = (await realm.tokens('alice')).access_token;
    expect(header(oldToken).kid).toBe(original!.kid);
    const unseenOldToken = (await realm.tokens('bob')).access_token;
    expect(await send(steady.url, oldToken)).toEqual({ status: 200 });
    expect(await send(refreshing.url, oldToken)).toEqual({ status: 200 });

    // The steady stream: a client that takes a new token every fifth request, as tokens expire
    // and renew, and sends requests back to back until told to stop.
    let running = true;
    const results: { status: number; reason?: string; kid: string }[] = [];
    const stream = (async () => {
      let token = oldToken;
      for (let i = 0; running && i < 5000; i++) {
        if (i % 5 === 0) token = (await realm.tokens('alice')).access_token;
        results.push({ ...(await send(steady.url, token)), kid: header(token).kid });
      }
    })();
    const waitFor = async (what: string, condition: () => boolean | Promise<boolean>) => {
      const deadline = Date.now() + 20_000;
      while (!(await condition())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    await waitFor('requests with the old key', () => results.length >= 10);

    const added = await realm.addRsaKey('rotated', 200);
    const newToken = (await realm.tokens('alice')).access_token;
    expect(header(newToken).kid).toBe(added.kid);
    expect(await send(steady.url, newToken)).toEqual({ status: 200 });
    await waitFor('stream requests with the new key', () => results.filter((r) => r.kid === added.kid).length >= 10);

    // Retire the old key: passive first (verifies, no longer signs), then disabled (gone from the JWKS).
    await realm.setKey(original!.id, { active: false });
    await waitFor('more stream requests', () => results.filter((r) => r.kid === added.kid).length >= 20);
    await realm.setKey(original!.id, { enabled: false });
    const jwks = (await (await fetch(realm.jwksUri)).json()) as { keys: { kid: string }[] };
    expect(jwks.keys.map((k) => k.kid)).not.toContain(original!.kid);
    const count = results.length;
    await waitFor('stream requests after the removal', () => results.length >= count + 10);
    running = false;
    await stream;

    expect(results.filter((r) => r.status !== 200)).toEqual([]);
    expect(results.filter((r) => r.kid === original!.kid).length).toBeGreaterThan(0);

    // After its next refresh the refreshing sidecar refuses the removed key's tokens, a token it
    // had accepted (and remembered) as well as one it never saw; new-key tokens still pass.
    await waitFor('the removed key to be refused', async () => (await send(refreshing.url, oldToken)).status === 401);
    expect(await send(refreshing.url, oldToken)).toEqual({ status: 401, reason: 'unknown_key' });
    expect(await send(refreshing.url, unseenOldToken)).toEqual({ status: 401, reason: 'unknown_key' });
    expect(await send(refreshing.url, newToken)).toEqual({ status: 200 });
  }, 120_000);
});
