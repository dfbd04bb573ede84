// UPSTREAM_TOKEN: what the upstream gets in Authorization. `exchange` against the test issuer's
// token endpoint: the request the sidecar makes (RFC 8693 form, client credentials from the
// mounted file), caching per client token, one exchange for concurrent requests, every kind of
// failure a 502 that reaches nothing upstream; with several issuers, each issuer's tokens at its
// own token endpoint as its own client, caches apart. Keycloak's own exchange:
// interop/keycloak-token-exchange.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startIssuer, type TestIssuer, type TokenHandler } from '../helpers/issuer.js';
import { TokenExchanges } from '../../src/auth/token-exchange.js';
import { loadConfig, trustedIssuers } from '../../src/config/config.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { createDpopKey, createProof } from '../helpers/dpop.js';
import { captureLog } from '../helpers/log-capture.js';

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

interface Seen {
  authorization: string | undefined;
  form: URLSearchParams;
}

async function send(url: string, authorization: string, extra: string[] = [], body = '{"jsonrpc":"2.0","id":1,"method":"ping"}') {
  const res = await request(`${url}/mcp`, {
    method: 'POST',
    headers: ['content-type', 'application/json', 'authorization', authorization, ...extra],
    body,
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function exchanges(sidecar: RunningSidecar): Promise<{ success: number; failure: number }> {
  const text = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
  const count = (result: string) =>
    Number(new RegExp(`^mcp_auth_token_exchanges_total\\{result="${result}"\\} (\\d+)`, 'm').exec(text)![1]);
  return { success: count('success'), failure: count('failure') };
}

describe('UPSTREAM_TOKEN=exchange', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let secretFile: string;
  const sidecars: RunningSidecar[] = [];
  const seen: Seen[] = [];
  let issued = 0;
  /** The token endpoint: records the request, answers a fresh token for the upstream. */
  const issuing =
    (answer: (form: URLSearchParams) => Record<string, unknown> = () => ({})): TokenHandler =>
    ({ headers, form }, res) => {
      seen.push({ authorization: headers.authorization, form });
      issued++;
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          access_token: `upstream-token-${issued}`,
          token_type: 'Bearer',
          expires_in: 300,
          issued_token_type: ACCESS_TOKEN,
          ...answer(form),
        }),
      );
    };
  const start = async (env: Record<string, string> = {}, options = {}) => {
    const sidecar = await startSidecar(
      testEnv(issuer, upstream, {
        UPSTREAM_TOKEN: 'exchange',
        TOKEN_EXCHANGE_AUDIENCE: 'datastore-upstream',
        TOKEN_EXCHANGE_CLIENT_ID: 'mcp sidecar',
        TOKEN_EXCHANGE_CLIENT_SECRET_FILE: secretFile,
        ...env,
      }),
      options,
    );
    sidecars.push(sidecar);
    return sidecar;
  };

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey('RS256');
    upstream = await startUpstream();
    secretFile = join(mkdtempSync(join(tmpdir(), 'exchange-secret-')), 'client-secret');
  });
  afterEach(async () => {
    for (const sidecar of sidecars.splice(0)) await sidecar.close();
    seen.length = 0;
    issuer.handleToken(undefined);
  });
  afterAll(async () => {
    await upstream.close();
    await issuer.close();
  });

  it("exchanges the client's token by RFC 8693 and sends the upstream only the token it got", async () => {
    writeFileSync(secretFile, 's3cret:with&odd chars\n');
    issuer.handleToken(issuing());
    const sidecar = await start();
    const token = await issuer.mint();
    const before = upstream.seen.length;
    expect((await send(sidecar.url, `Bearer ${token}`)).status).toBe(200);
    expect(seen).toHaveLength(1);
    const { authorization, form } = seen[0]!;
    expect(Object.fromEntries(form)).toEqual({
      grant_type: GRANT,
      subject_token: token,
      subject_token_type: ACCESS_TOKEN,
      requested_token_type: ACCESS_TOKEN,
      audience: 'datastore-upstream',
    });
    // RFC 6749 section 2.3.1: id and secret form-encoded, then Basic; the trailing newline of the file dropped.
    expect(authorization).toBe(`Basic ${Buffer.from('mcp+sidecar:s3cret%3Awith%26odd+chars').toString('base64')}`);
    const headers = upstream.seen[before]!.headers;
    expect(headers.authorization).toBe(`Bearer upstream-token-${issued}`);
    expect(headers['x-verified-user']).toBe('alice');
  });

  it('exchanges once per client token: cached after, and shared by concurrent requests', async () => {
    writeFileSync(secretFile, 'secret');
    // Answers only once both exchanges have arrived, so the requests are concurrent for sure.
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let arrived = 0;
    const answer = issuing();
    issuer.handleToken((request, res) => {
      if (++arrived === 2) release();
      void gate.then(() => answer(request, res));
    });
    const sidecar = await start();
    const token = await issuer.mint();
    const other = await issuer.mint({ preferred_username: 'bob', sub: 'bob-subject' });
    const before = upstream.seen.length;
    const concurrent = Promise.all([
      ...Array.from({ length: 20 }, () => send(sidecar.url, `Bearer ${token}`)),
      ...Array.from({ length: 10 }, () => send(sidecar.url, `Bearer ${other}`)),
    ]);
    expect((await concurrent).every((r) => r.status === 200)).toBe(true);
    for (let i = 0; i < 10; i++) expect((await send(sidecar.url, `Bearer ${token}`)).status).toBe(200);
    expect(seen).toHaveLength(2);
    expect(await exchanges(sidecar)).toEqual({ success: 2, failure: 0 });
    const tokens = new Set(upstream.seen.slice(before).map((r) => r.headers.authorization));
    expect(tokens.size).toBe(2);
  });

  it('exchanges again once the token it got is near its expiry', async () => {
    writeFileSync(secretFile, 'secret');
    issuer.handleToken(issuing(() => ({ expires_in: 60 })));
    let clock = Date.now();
    const sidecar = await start({}, { now: () => clock });
    const token = await issuer.mint({ exp: Math.floor(clock / 1000) + 3600 });
    expect((await send(sidecar.url, `Bearer ${token}`)).status).toBe(200);
    clock += 45_000;
    expect((await send(sidecar.url, `Bearer ${token}`)).status).toBe(200);
    expect(seen).toHaveLength(1);
    // 60 s lifetime, used until 10 s before its end.
    clock += 6_000;
    expect((await send(sidecar.url, `Bearer ${token}`)).status).toBe(200);
    expect(seen).toHaveLength(2);
  });

  const failures: [string, TokenHandler][] = [
    [
      'the issuer refuses (400 invalid_grant)',
      (_request, res) => {
        res.statusCode = 400;
        res.setHeader('content-type', 'application/json');
        res.end('{"error":"invalid_grant","error_description":"subject token not valid"}');
      },
    ],
    [
      "the issuer's description quotes the token it refuses",
      (request, res) => {
        res.statusCode = 400;
        res.setHeader('content-type', 'application/json');
        const token = request.form.get('subject_token') ?? '';
        res.end(
          JSON.stringify({
            error: 'invalid_grant',
            error_description: `${token.split('.')[1]!.slice(0, 60)} is no token; ${token} neither`,
          }),
        );
      },
    ],
    ['the issuer answers 500 with HTML', (_request, res) => void ((res.statusCode = 500), res.end('<html>oops</html>'))],
    ['the answer has no access_token', (_request, res) => void res.end('{"token_type":"Bearer"}')],
    [
      'the access_token would inject a header',
      (_request, res) => void res.end(JSON.stringify({ access_token: 'abc\r\nX-Verified-User: admin', token_type: 'Bearer' })),
    ],
    [
      'a DPoP-bound token is issued',
      (_request, res) => void res.end(JSON.stringify({ access_token: 'abc', token_type: 'DPoP', expires_in: 60 })),
    ],
    ['the connection is dropped', (_request, res) => void res.socket?.destroy()],
  ];

  it.each(failures)('%s: 502 token_exchange_failed, counted, nothing upstream; the next request tries again', async (_name, handler) => {
    writeFileSync(secretFile, 'secret');
    issuer.handleToken(handler);
    const log = captureLog('warn');
    const sidecar = await start({}, { logger: log.logger });
    const token = await issuer.mint();
    const before = upstream.seen.length;
    const answer = await send(sidecar.url, `Bearer ${token}`);
    expect(answer.status).toBe(502);
    expect(answer.body).toEqual({
      error: 'bad_gateway',
      reason: 'token_exchange_failed',
      error_description: 'the identity provider did not exchange the token for one of the upstream',
    });
    expect(upstream.seen.length).toBe(before);
    expect(await exchanges(sidecar)).toEqual({ success: 0, failure: 1 });
    // The log says why, never with a token.
    expect(log.text()).toContain('token exchange failed');
    expect(log.text()).not.toContain(token);
    expect(log.text()).not.toContain(token.split('.')[1]!.slice(0, 60));
    expect(log.text()).not.toContain(token.slice(0, 60));
    issuer.handleToken(issuing());
    expect((await send(sidecar.url, `Bearer ${token}`)).status).toBe(200);
  });

  it('a token endpoint that never answers: 502 after 5 s, not a hang', async () => {
    writeFileSync(secretFile, 'secret');
    issuer.handleToken(() => {});
    const sidecar = await start();
    const startedAt = Date.now();
    expect((await send(sidecar.url, `Bearer ${await issuer.mint()}`)).status).toBe(502);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(4500);
    expect(Date.now() - startedAt).toBeLessThan(15_000);
  }, 30_000);

  it('the MCP messages of a request whose exchange failed end as upstream_error in the audit', async () => {
    writeFileSync(secretFile, 'secret');
    issuer.handleToken((_request, res) => void ((res.statusCode = 503), res.end()));
    const log = captureLog();
    const sidecar = await start({ LOG_LEVEL: 'info' }, { logger: log.logger });
    const call = JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'query', arguments: {} } });
    expect((await send(sidecar.url, `Bearer ${await issuer.mint()}`, [], call)).status).toBe(502);
    const [line] = await log.waitForAudit((l) => l.rpcId === 9);
    expect(line).toMatchObject({ method: 'tools/call', tool: 'query', outcome: 'upstream_error' });
    expect(log.lines().find((l) => l.msg === 'request')).toMatchObject({ status: 502, reason: 'token_exchange_failed' });
  });

  it('reads a new client secret when the mounted file changes', async () => {
    writeFileSync(secretFile, 'old-secret');
    issuer.handleToken(issuing());
    const sidecar = await start();
    expect((await send(sidecar.url, `Bearer ${await issuer.mint()}`)).status).toBe(200);
    expect(seen.at(-1)!.authorization).toBe(`Basic ${Buffer.from('mcp+sidecar:old-secret').toString('base64')}`);
    writeFileSync(secretFile, 'new-secret\n');
    const deadline = Date.now() + 10_000;
    for (;;) {
      expect((await send(sidecar.url, `Bearer ${await issuer.mint()}`)).status).toBe(200);
      if (seen.at(-1)!.authorization === `Basic ${Buffer.from('mcp+sidecar:new-secret').toString('base64')}`) break;
      if (Date.now() > deadline) throw new Error('the new secret was not used within 10 s');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });

  it('start-up fails naming TOKEN_EXCHANGE_CLIENT_SECRET_FILE when the file cannot be read', async () => {
    await expect(start({ TOKEN_EXCHANGE_CLIENT_SECRET_FILE: join(tmpdir(), 'no-such-dir', 'secret') })).rejects.toMatchObject({
      name: 'StartupError',
      variable: 'TOKEN_EXCHANGE_CLIENT_SECRET_FILE',
    });
  });

  it('exchanges a DPoP-bound token too, and sends the upstream neither it nor the proof', async () => {
    writeFileSync(secretFile, 'secret');
    issuer.handleToken(issuing());
    const sidecar = await start({ DPOP: 'allow' });
    const key = await createDpopKey();
    const token = await issuer.mint({ typ: 'DPoP', cnf: { jkt: key.jkt } });
    const proof = await createProof(key, { htm: 'POST', htu: 'http://mcp.test:8080/mcp', token });
    const before = upstream.seen.length;
    expect((await send(sidecar.url, `DPoP ${token}`, ['dpop', proof])).status).toBe(200);
    expect(seen.at(-1)!.form.get('subject_token')).toBe(token);
    expect(upstream.seen[before]!.headers.authorization).toBe(`Bearer upstream-token-${issued}`);
    expect(upstream.seen[before]!.headers.dpop).toBeUndefined();
  });
});

describe('UPSTREAM_TOKEN=exchange with several issuers', () => {
  // Two realms on two servers: staff (OIDC_ISSUER, TOKEN_EXCHANGE_*) and contractors (ISSUERS_FILE's tokenExchange).
  let staff: TestIssuer;
  let contractors: TestIssuer;
  let upstream: TestUpstream;
  let dir: string;
  const sidecars: RunningSidecar[] = [];
  const seen = new Map<string, Seen[]>();
  const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
  /** A token endpoint that records what it saw and answers tokens named after its realm. */
  const endpoint =
    (realm: string): TokenHandler =>
    ({ headers, form }, res) => {
      const list = seen.get(realm) ?? [];
      list.push({ authorization: headers.authorization, form });
      seen.set(realm, list);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ access_token: `${realm}-minted-${list.length}`, token_type: 'Bearer', expires_in: 300 }));
    };
  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const env = () =>
    testEnv(staff, upstream, {
      UPSTREAM_TOKEN: 'exchange',
      TOKEN_EXCHANGE_AUDIENCE: 'staff-upstream',
      TOKEN_EXCHANGE_CLIENT_ID: 'staff-sidecar',
      TOKEN_EXCHANGE_CLIENT_SECRET_FILE: write('staff-secret', 'staff-secret\n'),
      ISSUERS_FILE: write(
        'issuers.yaml',
        [
          `- issuer: ${contractors.issuer}`,
          '  allowedAzp: [coder]',
          '  tokenExchange:',
          '    audience: contractors-upstream',
          '    clientId: contractors-sidecar',
          `    clientSecretFile: ${write('contractors-secret', 'contractors-secret')}`,
          '',
        ].join('\n'),
      ),
    });
  const start = async (options = {}) => {
    const sidecar = await startSidecar(env(), options);
    sidecars.push(sidecar);
    return sidecar;
  };

  beforeAll(async () => {
    staff = await startIssuer({ realmPath: '/realms/staff' });
    contractors = await startIssuer({ realmPath: '/realms/contractors' });
    await staff.addKey('RS256');
    await contractors.addKey('RS256');
    upstream = await startUpstream();
    dir = mkdtempSync(join(tmpdir(), 'exchange-issuers-'));
  });
  afterEach(async () => {
    for (const sidecar of sidecars.splice(0)) await sidecar.close();
    seen.clear();
    staff.handleToken(endpoint('staff'));
    contractors.handleToken(endpoint('contractors'));
  });
  afterAll(async () => {
    await upstream.close();
    await staff.close();
    await contractors.close();
  });

  it("exchanges each issuer's token at its own endpoint, as its own client, and the upstream gets that issuer's token", async () => {
    staff.handleToken(endpoint('staff'));
    contractors.handleToken(endpoint('contractors'));
    const sidecar = await start();
    const staffToken = await staff.mint();
    const contractorToken = await contractors.mint({ preferred_username: 'carol', sub: 'carol-subject' });
    const before = upstream.seen.length;
    expect((await send(sidecar.url, `Bearer ${contractorToken}`)).status).toBe(200);
    expect((await send(sidecar.url, `Bearer ${staffToken}`)).status).toBe(200);
    const form = (token: string, audience: string) => ({
      grant_type: GRANT,
      subject_token: token,
      subject_token_type: ACCESS_TOKEN,
      requested_token_type: ACCESS_TOKEN,
      audience,
    });
    expect(seen.get('contractors')!.map((s) => [s.authorization, Object.fromEntries(s.form)])).toEqual([
      [basic('contractors-sidecar', 'contractors-secret'), form(contractorToken, 'contractors-upstream')],
    ]);
    expect(seen.get('staff')!.map((s) => [s.authorization, Object.fromEntries(s.form)])).toEqual([
      [basic('staff-sidecar', 'staff-secret'), form(staffToken, 'staff-upstream')],
    ]);
    expect(upstream.seen.slice(before).map((r) => [r.headers['x-verified-user'], r.headers.authorization])).toEqual([
      ['carol', 'Bearer contractors-minted-1'],
      ['alice', 'Bearer staff-minted-1'],
    ]);
    // Each issuer's exchanged token is cached on its own: no further call to either endpoint.
    expect((await send(sidecar.url, `Bearer ${contractorToken}`)).status).toBe(200);
    expect((await send(sidecar.url, `Bearer ${staffToken}`)).status).toBe(200);
    expect([seen.get('staff')!.length, seen.get('contractors')!.length]).toEqual([1, 1]);
    expect(upstream.seen.slice(-2).map((r) => r.headers.authorization)).toEqual(['Bearer contractors-minted-1', 'Bearer staff-minted-1']);
    expect(await exchanges(sidecar)).toEqual({ success: 2, failure: 0 });
  });

  it("a contractors' token never reaches the staff endpoint, even when its own issuer refuses: 502, the log names the issuer", async () => {
    staff.handleToken(endpoint('staff'));
    contractors.handleToken((_request, res) => {
      res.statusCode = 400;
      res.setHeader('content-type', 'application/json');
      res.end('{"error":"unauthorized_client","error_description":"client not allowed to exchange"}');
    });
    const log = captureLog('warn');
    const sidecar = await start({ logger: log.logger });
    const contractorToken = await contractors.mint();
    const before = upstream.seen.length;
    expect(await send(sidecar.url, `Bearer ${contractorToken}`)).toMatchObject({ status: 502, body: { reason: 'token_exchange_failed' } });
    expect(seen.get('staff')).toBeUndefined();
    expect(upstream.seen.length).toBe(before);
    expect(await exchanges(sidecar)).toEqual({ success: 0, failure: 1 });
    const failure = log.lines().find((l) => String(l.msg).startsWith('token exchange failed'));
    expect(failure).toMatchObject({ issuer: contractors.issuer, audience: 'contractors-upstream', issuerError: 'unauthorized_client' });
    expect(log.text()).not.toContain(contractorToken);
    expect(log.text()).not.toContain('contractors-secret');
    // The other issuer's users are not affected.
    expect((await send(sidecar.url, `Bearer ${await staff.mint()}`)).status).toBe(200);
    expect(seen.get('staff')).toHaveLength(1);
  });

  it('reads a new client secret of an ISSUERS_FILE issuer when its mounted file changes', async () => {
    staff.handleToken(endpoint('staff'));
    contractors.handleToken(endpoint('contractors'));
    const sidecar = await start();
    write('contractors-secret', 'rotated-secret\n');
    const deadline = Date.now() + 10_000;
    for (;;) {
      expect((await send(sidecar.url, `Bearer ${await contractors.mint()}`)).status).toBe(200);
      if (seen.get('contractors')!.at(-1)!.authorization === basic('contractors-sidecar', 'rotated-secret')) break;
      if (Date.now() > deadline) throw new Error('the new secret was not used within 10 s');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(seen.get('staff')).toBeUndefined();
  });

  it('keeps the caches apart: one token string is exchanged at each issuer it is given for; one issuer never evicts the other', async () => {
    staff.handleToken(endpoint('staff'));
    contractors.handleToken(endpoint('contractors'));
    // Two issuers share a bound of 2: one cached token each.
    const exchange = new TokenExchanges(trustedIssuers(loadConfig(env())), { logger: captureLog('silent').logger, maxEntries: 2 });
    try {
      // The token endpoints here check nothing: any string is a subject token.
      expect(await exchange.authorizationFor('same-token', staff.issuer)).toBe('Bearer staff-minted-1');
      expect(await exchange.authorizationFor('same-token', contractors.issuer)).toBe('Bearer contractors-minted-1');
      expect(await exchange.authorizationFor('same-token', staff.issuer)).toBe('Bearer staff-minted-1');
      expect(await exchange.authorizationFor('same-token', contractors.issuer)).toBe('Bearer contractors-minted-1');
      // Contractors' traffic fills only the contractors' cache.
      expect(await exchange.authorizationFor('other-token', contractors.issuer)).toBe('Bearer contractors-minted-2');
      expect(await exchange.authorizationFor('same-token', staff.issuer)).toBe('Bearer staff-minted-1');
      expect(await exchange.authorizationFor('same-token', contractors.issuer)).toBe('Bearer contractors-minted-3');
      expect([seen.get('staff')!.length, seen.get('contractors')!.length]).toEqual([1, 3]);
      // An issuer without an exchange gets none, and no endpoint sees the token.
      await expect(exchange.authorizationFor('same-token', 'https://elsewhere.example')).rejects.toThrow(/no token exchange/);
      await expect(exchange.authorizationFor('same-token', undefined)).rejects.toThrow(/no token exchange/);
      expect([seen.get('staff')!.length, seen.get('contractors')!.length]).toEqual([1, 3]);
    } finally {
      exchange.close();
    }
  });
});

describe('UPSTREAM_TOKEN=none and forward', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  const sidecars: RunningSidecar[] = [];

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey('RS256');
    upstream = await startUpstream();
  });
  afterAll(async () => {
    for (const sidecar of sidecars) await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  it.each([
    [{}, undefined],
    [{ UPSTREAM_TOKEN: 'forward' }, 'forward'],
    [{ FORWARD_AUTHORIZATION: 'true' }, 'forward'],
  ] as const)('%j: the upstream gets the client token: %s', async (env, expected) => {
    const sidecar = await startSidecar(testEnv(issuer, upstream, env));
    sidecars.push(sidecar);
    const token = await issuer.mint();
    const before = upstream.seen.length;
    expect((await send(sidecar.url, `Bearer ${token}`, ['dpop', 'a.b.c'])).status).toBe(200);
    const headers = upstream.seen[before]!.headers;
    expect(headers.authorization).toBe(expected === 'forward' ? `Bearer ${token}` : undefined);
    expect(headers.dpop).toBe(expected === 'forward' ? 'a.b.c' : undefined);
  });
});
