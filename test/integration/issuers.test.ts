// Several trusted issuers at once (OIDC_* for the first, ISSUERS_FILE for the others), and token
// introspection (RFC 7662) against the test issuers' own endpoints: each issuer its own key set
// and rules, kids colliding across issuers, an untrusted issuer costing no fetch, lightweight
// and opaque tokens, the introspection cache, and introspection down.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { captureLog } from '../helpers/log-capture.js';

const dir = mkdtempSync(join(tmpdir(), 'issuers-'));
let fileCount = 0;
function file(text: string): string {
  const path = join(dir, `file-${fileCount++}`);
  writeFileSync(path, text);
  return path;
}

async function send(
  url: string,
  token: string,
  path = '/mcp',
): Promise<{ status: number; reason?: string; headers: Record<string, unknown> }> {
  const res = await request(`${url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  const body = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    ...(res.statusCode === 200 ? {} : { reason: (JSON.parse(body) as { reason: string }).reason }),
  };
}

async function metrics(sidecar: RunningSidecar): Promise<string> {
  return (await request(`${sidecar.adminUrl}/metrics`)).body.text();
}

/** Waits for a condition the sidecar's own timers or watchers bring about; fails after `ms`. */
async function until(condition: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('several trusted issuers', () => {
  let a: TestIssuer;
  let b: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar | undefined;

  beforeEach(async () => {
    a = await startIssuer({ realmPath: '/realms/a' });
    b = await startIssuer({ realmPath: '/realms/b' });
    upstream = await startUpstream();
  });
  afterEach(async () => {
    await sidecar?.close();
    sidecar = undefined;
    await Promise.all([a.close(), b.close(), upstream.close()]);
  });

  /** A trusted, B from ISSUERS_FILE with rules of its own: audience `partners-mcp`, user claim `email`, group /partners. */
  async function start(env: Record<string, string> = {}, bEntry = '') {
    const issuersFile = file(
      `- issuer: ${b.issuer}\n  audiences: [partners-mcp]\n  userClaim: email\n  requiredGroups: [/partners]\n${bEntry}`,
    );
    sidecar = await startSidecar(testEnv(a, upstream, { ISSUERS_FILE: issuersFile, ...env }));
    return sidecar;
  }

  it("accepts a token of each issuer under that issuer's own rules, and says which issuer vouched", async () => {
    await a.addKey();
    await b.addKey();
    const { url } = await start();
    expect(await send(url, await a.mint())).toMatchObject({ status: 200 });
    expect(upstream.seen.at(-1)!.headers).toMatchObject({ 'x-verified-user': 'alice', 'x-verified-issuer': a.issuer });

    const partner = { aud: 'partners-mcp', azp: 'portal', email: 'pat@partner.example', groups: ['/partners'] };
    expect(await send(url, await b.mint(partner))).toMatchObject({ status: 200 });
    expect(upstream.seen.at(-1)!.headers).toMatchObject({ 'x-verified-user': 'pat@partner.example', 'x-verified-issuer': b.issuer });

    // A's rules do not carry over to B, nor B's to A.
    expect(await send(url, await b.mint({ ...partner, aud: 'account', azp: 'coder' }))).toMatchObject({ reason: 'wrong_audience' });
    expect(await send(url, await b.mint({ ...partner, groups: ['/alpha'] }))).toMatchObject({ status: 403, reason: 'forbidden' });
    expect(await send(url, await a.mint({ aud: 'partners-mcp', azp: 'portal' }))).toMatchObject({ reason: 'wrong_audience' });

    const text = await metrics(sidecar!);
    expect(sample(text, `mcp_auth_issuer_verdicts_total{issuer="${a.issuer}",verdict="accepted"}`)).toBe(1);
    expect(sample(text, `mcp_auth_issuer_verdicts_total{issuer="${b.issuer}",verdict="accepted"}`)).toBe(1);
    expect(sample(text, `mcp_auth_issuer_verdicts_total{issuer="${b.issuer}",verdict="forbidden"}`)).toBe(1);
    expect(sample(text, `mcp_auth_issuer_verdicts_total{issuer="${a.issuer}",verdict="wrong_audience"}`)).toBe(1);
    expect(sample(text, `mcp_auth_jwks_keys{issuer="${b.issuer}"}`)).toBe(1);

    const metadata = await (await request(`${url}/.well-known/oauth-protected-resource`)).body.json();
    expect(metadata).toMatchObject({ authorization_servers: [a.issuer, b.issuer] });
  });

  it('refuses a token naming an untrusted issuer as wrong_issuer without fetching any key set', async () => {
    await a.addKey();
    await b.addKey();
    const stranger = await startIssuer({ realmPath: '/realms/stranger' });
    try {
      const key = await stranger.addKey('RS256', { kid: 'never-seen' });
      const { url } = await start();
      const before = { a: { ...a.requests }, b: { ...b.requests }, stranger: { ...stranger.requests } };
      for (let i = 0; i < 3; i++)
        expect(await send(url, await stranger.mint({}, { key }))).toMatchObject({ status: 401, reason: 'wrong_issuer' });
      // A token that claims a trusted issuer's look-alike is no better.
      expect(await send(url, await a.mint({ iss: `${a.issuer}/` }))).toMatchObject({ reason: 'wrong_issuer' });
      expect({ a: a.requests, b: b.requests, stranger: stranger.requests }).toEqual(before);
      const text = await metrics(sidecar!);
      expect(text).not.toContain(stranger.issuer);
    } finally {
      await stranger.close();
    }
  });

  it("never verifies a token of one issuer with the other's key, even when their kids are the same", async () => {
    await a.addKey('RS256', { kid: 'shared-kid' });
    await b.addKey('RS256', { kid: 'shared-kid' });
    const { url } = await start();
    const partner = { aud: 'partners-mcp', email: 'pat@partner.example', groups: ['/partners'] };
    // B's key (kid shared-kid) signing a token that names A, and the other way round.
    expect(await send(url, await b.mint({ iss: a.issuer }))).toMatchObject({ status: 401, reason: 'invalid_signature' });
    expect(await send(url, await a.mint({ ...partner, iss: b.issuer }))).toMatchObject({ status: 401, reason: 'invalid_signature' });
    // Each issuer's own tokens pass.
    expect(await send(url, await a.mint())).toMatchObject({ status: 200 });
    expect(await send(url, await b.mint(partner))).toMatchObject({ status: 200 });
    // A kid only B publishes is unknown to A: one refetch at A, none at B.
    const onlyB = await b.addKey('RS256', { kid: 'only-in-b' });
    const jwksBefore = { a: a.requests.jwks, b: b.requests.jwks };
    expect(await send(url, await b.mint({ iss: a.issuer }, { key: onlyB }))).toMatchObject({ reason: 'unknown_key' });
    expect({ a: a.requests.jwks - jwksBefore.a, b: b.requests.jwks - jwksBefore.b }).toEqual({ a: 1, b: 0 });
  });

  it('keeps a cached verdict only while its key is in its own issuer key set', async () => {
    await a.addKey('RS256', { kid: 'shared-kid' });
    await b.addKey('RS256', { kid: 'shared-kid' });
    const { url, app } = await start();
    const partner = { aud: 'partners-mcp', email: 'pat@partner.example', groups: ['/partners'] };
    const [tokenA, tokenB] = [await a.mint(), await b.mint(partner)];
    expect((await send(url, tokenA)).status).toBe(200);
    expect((await send(url, tokenB)).status).toBe(200);
    // B drops its key: B's token stops at B's next refresh; A's, under A's key of the same kid, goes on.
    b.removeKey('shared-kid');
    await b.addKey();
    const bKeys = app.issuers[1]!.keys as unknown as { refresh(): Promise<void> };
    await bKeys.refresh();
    expect(await send(url, tokenB)).toMatchObject({ status: 401, reason: 'unknown_key' });
    expect((await send(url, tokenA)).status).toBe(200);
  });

  it('is ready with one usable key set and names the issuer that has none', async () => {
    await a.addKey();
    b.mode = 'status-503';
    const { adminUrl } = await start({ JWKS_MAX_STALE_SECONDS: '1' });
    const ready = await request(`${adminUrl}/readyz`);
    expect(ready.statusCode).toBe(200);
    expect(await ready.body.json()).toMatchObject({ ready: true, degraded: [`jwks of ${b.issuer}: no key set loaded yet`] });
  });

  it('refuses to start on an ISSUERS_FILE with problems, naming each with its line', async () => {
    await a.addKey();
    const bad = file(
      `- issuer: ${a.issuer}\n  allowedAzp: [coder]\n- issuer: not a url\n  audiences: [x]\n  colour: blue\n- issuer: https://c.example\n`,
    );
    const problems = await start({ ISSUERS_FILE: bad }).then(
      () => [],
      (error: { problems?: string[] }) => error.problems ?? [],
    );
    expect(problems).toEqual([
      `ISSUERS_FILE ${bad}:5:3: unknown key "colour" of an issuer: expected issuer, jwksUri, audiences, allowedAzp, userClaim, tokenType, requiredGroups, requiredRoles, introspection, tokenExchange`,
      `ISSUERS_FILE ${bad}:3:11: issuer: expected an absolute http(s) URL`,
      `ISSUERS_FILE ${bad}:6:3: issuer "https://c.example": audiences and allowedAzp are both empty: set at least one`,
      // The checks between variables see the issuers read despite the problems: all told at once.
      `ISSUERS_FILE lists OIDC_ISSUER (${a.issuer}) again: the OIDC_* variables describe it, list only further issuers`,
    ]);
    const again = file(`- issuer: ${a.issuer}\n  allowedAzp: [coder]\n`);
    await expect(start({ ISSUERS_FILE: again })).rejects.toThrow(/ISSUERS_FILE lists OIDC_ISSUER/);
  });
});

describe('token introspection', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar | undefined;

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
  });
  afterEach(async () => {
    await sidecar?.close();
    sidecar = undefined;
    await Promise.all([issuer.close(), upstream.close()]);
  });

  async function start(env: Record<string, string> = {}, options: Parameters<typeof startSidecar>[1] = {}) {
    sidecar = await startSidecar(
      testEnv(issuer, upstream, {
        OIDC_INTROSPECTION: 'missing-claims',
        OIDC_INTROSPECTION_CLIENT_ID: issuer.introspection.client.id,
        OIDC_INTROSPECTION_CLIENT_SECRET_FILE: file(`${issuer.introspection.client.secret}\n`),
        REQUIRED_GROUPS: '/alpha',
        ...env,
      }),
      options,
    );
    return sidecar;
  }
  const lightweight = ['preferred_username', 'email', 'groups', 'realm_access'];

  it('fills in what a lightweight token leaves out, once per token, whatever the number of requests', async () => {
    issuer.introspection.extraClaims = { preferred_username: 'alice', groups: ['/alpha'], email: 'alice@example.com' };
    const { url } = await start();
    const token = await issuer.mint({}, { omit: lightweight });
    const answers = await Promise.all(Array.from({ length: 5 }, () => send(url, token)));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    for (let i = 0; i < 5; i++) expect((await send(url, token)).status).toBe(200);
    expect(issuer.introspection.calls.filter((t) => t === token)).toHaveLength(1);
    expect(upstream.seen.at(-1)!.headers).toMatchObject({ 'x-verified-user': 'alice', 'x-verified-groups': '/alpha' });
    // A full token needs none.
    expect((await send(url, await issuer.mint())).status).toBe(200);
    expect(issuer.introspection.calls).toHaveLength(1);
    const text = await metrics(sidecar!);
    expect(sample(text, `mcp_auth_introspection_requests_total{issuer="${issuer.issuer}",result="active"}`)).toBe(1);
  });

  it('keeps the introspection answer when the verdict cache is off, and shares one call among concurrent requests', async () => {
    issuer.introspection.extraClaims = { preferred_username: 'alice', groups: ['/alpha'] };
    const { url } = await start({ VERDICT_CACHE_SIZE: '0' });
    const token = await issuer.mint({}, { omit: lightweight });
    const answers = await Promise.all(Array.from({ length: 8 }, () => send(url, token)));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect((await send(url, token)).status).toBe(200);
    expect(issuer.introspection.calls).toHaveLength(1);
  });

  it('refuses a token the issuer says is not active (inactive_token), and an answer about someone else', async () => {
    const { url } = await start();
    const token = await issuer.mint({}, { omit: lightweight });
    issuer.introspection.revoked.add(token);
    expect(await send(url, token)).toMatchObject({ status: 401, reason: 'inactive_token' });
    expect(await send(url, token)).toMatchObject({ status: 401, reason: 'inactive_token' });
    expect(issuer.introspection.calls).toHaveLength(1);
    issuer.introspection.extraClaims = { sub: 'someone-else', preferred_username: 'mallory', groups: ['/alpha'] };
    expect(await send(url, await issuer.mint({}, { omit: lightweight }))).toMatchObject({ status: 401, reason: 'invalid_claim' });
  });

  it('introspection down: tokens seen before are served from the cache, new ones get 503 until it is back', async () => {
    issuer.introspection.extraClaims = { preferred_username: 'alice', groups: ['/alpha'] };
    const log = captureLog('warn');
    const { url } = await start({ VERDICT_CACHE_SIZE: '0' }, { logger: log.logger });
    const known = await issuer.mint({}, { omit: lightweight });
    expect((await send(url, known)).status).toBe(200);
    for (const mode of ['down', 'garbage'] as const) {
      issuer.introspection.mode = mode;
      expect((await send(url, known)).status).toBe(200);
      const fresh = await send(url, await issuer.mint({}, { omit: lightweight }));
      expect(fresh).toMatchObject({ status: 503, reason: 'introspection_unavailable', headers: { 'retry-after': '5' } });
    }
    issuer.introspection.mode = 'ok';
    expect((await send(url, await issuer.mint({}, { omit: lightweight }))).status).toBe(200);
    const text = await metrics(sidecar!);
    expect(sample(text, `mcp_auth_introspection_requests_total{issuer="${issuer.issuer}",result="error"}`)).toBe(2);
    expect(sample(text, 'mcp_auth_rejected_total{reason="introspection_unavailable"}')).toBe(2);
    // The warn line names the failure, never the token.
    const failures = log.lines().filter((l) => l.msg === 'introspection failed');
    expect(failures).toHaveLength(2);
    for (const token of issuer.introspection.calls) expect(log.text()).not.toContain(token.split('.')[2]);
  });

  it('accepts opaque tokens when introspection is always, and only then', async () => {
    issuer.introspection.opaque.set('opaque-token-0123456789', {
      iss: issuer.issuer,
      sub: 'u-1',
      azp: 'coder',
      typ: 'Bearer',
      exp: Math.floor(Date.now() / 1000) + 300,
      preferred_username: 'olga',
      groups: ['/alpha'],
    });
    issuer.introspection.opaque.set('opaque-no-exp-0123456789', {
      iss: issuer.issuer,
      azp: 'coder',
      typ: 'Bearer',
      preferred_username: 'x',
    });
    const plain = await start({ OIDC_INTROSPECTION: 'off' });
    expect(await send(plain.url, 'opaque-token-0123456789')).toMatchObject({ status: 401, reason: 'malformed_token' });
    await plain.close();
    sidecar = undefined;

    const { url } = await start({ OIDC_INTROSPECTION: 'always' });
    expect((await send(url, 'opaque-token-0123456789')).status).toBe(200);
    expect(upstream.seen.at(-1)!.headers).toMatchObject({ 'x-verified-user': 'olga', 'x-verified-issuer': issuer.issuer });
    expect((await send(url, 'opaque-token-0123456789')).status).toBe(200);
    expect(await send(url, 'unknown-opaque-0123456789')).toMatchObject({ status: 401, reason: 'inactive_token' });
    expect(await send(url, 'opaque-no-exp-0123456789')).toMatchObject({ status: 401, reason: 'missing_claim' });
    // Always: a full JWT is introspected too (once).
    const jwt = await issuer.mint();
    expect((await send(url, jwt)).status).toBe(200);
    expect((await send(url, jwt)).status).toBe(200);
    expect(issuer.introspection.calls.filter((t) => t === jwt)).toHaveLength(1);
    expect(issuer.introspection.calls.filter((t) => t === 'opaque-token-0123456789')).toHaveLength(1);
  });

  it('reads a rotated client secret without a restart', async () => {
    issuer.introspection.extraClaims = { preferred_username: 'alice', groups: ['/alpha'] };
    const secretFile = file('sidecar-secret');
    const log = captureLog('info');
    const { url } = await start({ OIDC_INTROSPECTION_CLIENT_SECRET_FILE: secretFile }, { logger: log.logger });
    expect((await send(url, await issuer.mint({}, { omit: lightweight }))).status).toBe(200);
    issuer.introspection.client.secret = 'rotated-secret';
    expect((await send(url, await issuer.mint({}, { omit: lightweight }))).status).toBe(503);
    writeFileSync(secretFile, 'rotated-secret\n');
    await until(() => log.lines().some((l) => l.msg === 'introspection client secret reloaded'));
    expect((await send(url, await issuer.mint({}, { omit: lightweight }))).status).toBe(200);
  });

  it('refuses to start when the client secret file cannot be read, naming the variable', async () => {
    await expect(start({ OIDC_INTROSPECTION_CLIENT_SECRET_FILE: join(dir, 'missing') })).rejects.toMatchObject({
      variable: 'OIDC_INTROSPECTION_CLIENT_SECRET_FILE',
    });
  });
});
