import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';

const METADATA = 'http://mcp.test:8080/.well-known/oauth-protected-resource';
const now = () => Math.floor(Date.now() / 1000);

interface Case {
  name: string;
  reason: string;
  status: number;
  /** The Authorization header value(s), built from the issuer. */
  authorization: (issuer: TestIssuer) => Promise<string | string[] | undefined>;
}

const bearer = (token: string) => `Bearer ${token}`;

const cases: Case[] = [
  { name: 'no Authorization header', reason: 'missing_token', status: 401, authorization: async () => undefined },
  { name: 'Basic scheme', reason: 'missing_token', status: 401, authorization: async () => 'Basic YWxpY2U6c2VjcmV0' },
  { name: 'not a JWS', reason: 'malformed_token', status: 401, authorization: async () => bearer('not-a-token') },
  {
    name: 'JWE (five parts)',
    reason: 'malformed_token',
    status: 401,
    authorization: async () => bearer('eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d'),
  },
  { name: 'undecodable header', reason: 'malformed_token', status: 401, authorization: async () => bearer('e30x.e30.c2ln') },
  { name: 'empty Bearer value', reason: 'malformed_token', status: 401, authorization: async () => 'Bearer ' },
  {
    name: 'several Authorization headers',
    reason: 'malformed_token',
    status: 401,
    authorization: async (i) => [bearer(await i.mint()), bearer(await i.mint())],
  },
  {
    name: 'alg none',
    reason: 'unsupported_algorithm',
    status: 401,
    authorization: async (i) => {
      const good = (await i.mint()).split('.');
      const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
      return bearer(`${header}.${good[1]}.`);
    },
  },
  {
    name: 'HS256',
    reason: 'unsupported_algorithm',
    status: 401,
    authorization: async (i) =>
      bearer(
        await new SignJWT({ iss: i.issuer, azp: 'coder', typ: 'Bearer', preferred_username: 'mallory', exp: now() + 60 })
          .setProtectedHeader({ alg: 'HS256', kid: i.keys[0]!.kid })
          .sign(new TextEncoder().encode('secret')),
      ),
  },
  {
    name: 'unknown kid',
    reason: 'unknown_key',
    status: 401,
    authorization: async (i) => bearer(await i.mint({}, { header: { kid: 'nobody-knows-me' } })),
  },
  {
    name: 'the enc key of the key set',
    reason: 'unknown_key',
    status: 401,
    authorization: async (i) => bearer(await i.mint({}, { header: { kid: 'enc-key' } })),
  },
  {
    name: 'signature by another key under a known kid',
    reason: 'invalid_signature',
    status: 401,
    authorization: async (i) => {
      const { privateKey } = await generateKeyPair('RS256');
      return bearer(
        await new SignJWT({ iss: i.issuer, azp: 'coder', typ: 'Bearer', preferred_username: 'mallory', exp: now() + 60 })
          .setProtectedHeader({ alg: 'RS256', kid: i.keys[0]!.kid })
          .sign(privateKey),
      );
    },
  },
  {
    name: 'attacker key embedded in the jwk header',
    reason: 'invalid_signature',
    status: 401,
    authorization: async (i) => {
      const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
      return bearer(
        await new SignJWT({ iss: i.issuer, azp: 'coder', typ: 'Bearer', preferred_username: 'mallory', exp: now() + 60 })
          .setProtectedHeader({ alg: 'RS256', kid: i.keys[0]!.kid, jwk: await exportJWK(publicKey), jku: 'http://127.0.0.1:1/jwks' })
          .sign(privateKey),
      );
    },
  },
  {
    name: 'expired beyond tolerance',
    reason: 'expired',
    status: 401,
    authorization: async (i) => bearer(await i.mint({ exp: now() - 60 })),
  },
  {
    name: 'nbf in the future',
    reason: 'not_yet_valid',
    status: 401,
    authorization: async (i) => bearer(await i.mint({ nbf: now() + 120 })),
  },
  {
    name: 'iat in the future',
    reason: 'not_yet_valid',
    status: 401,
    authorization: async (i) => bearer(await i.mint({ iat: now() + 120 })),
  },
  {
    name: 'another issuer',
    reason: 'wrong_issuer',
    status: 401,
    authorization: async (i) => bearer(await i.mint({ iss: `${i.url}/realms/other` })),
  },
  {
    name: 'issuer with a trailing slash',
    reason: 'wrong_issuer',
    status: 401,
    authorization: async (i) => bearer(await i.mint({ iss: `${i.issuer}/` })),
  },
  {
    name: 'azp and aud both foreign',
    reason: 'wrong_audience',
    status: 401,
    authorization: async (i) => bearer(await i.mint({ azp: 'grafana', aud: 'grafana' })),
  },
  { name: 'Keycloak ID token', reason: 'wrong_token_type', status: 401, authorization: async (i) => bearer(await i.mint({ typ: 'ID' })) },
  {
    name: 'Keycloak refresh token',
    reason: 'wrong_token_type',
    status: 401,
    authorization: async (i) => bearer(await i.mint({ typ: 'Refresh' })),
  },
  { name: 'no exp', reason: 'missing_claim', status: 401, authorization: async (i) => bearer(await i.mint({}, { omit: ['exp'] })) },
  {
    name: 'no user claim',
    reason: 'missing_claim',
    status: 401,
    authorization: async (i) => bearer(await i.mint({}, { omit: ['preferred_username'] })),
  },
  {
    name: 'empty user claim',
    reason: 'missing_claim',
    status: 401,
    authorization: async (i) => bearer(await i.mint({ preferred_username: '' })),
  },
  {
    name: 'newline in the user claim',
    reason: 'invalid_claim',
    status: 401,
    authorization: async (i) => bearer(await i.mint({ preferred_username: 'alice\r\nX-Verified-User: admin' })),
  },
  {
    name: 'control character in email',
    reason: 'invalid_claim',
    status: 401,
    authorization: async (i) => bearer(await i.mint({ email: 'a\u0000@example.com' })),
  },
  {
    name: 'user claim not a string',
    reason: 'invalid_claim',
    status: 401,
    authorization: async (i) => bearer(await i.mint({ preferred_username: 42 })),
  },
];

describe('every rejection reason: status, JSON, WWW-Authenticate, and nothing reaches the upstream', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey('RS256');
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream));
  });
  afterAll(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  it.each(cases)('$name → $status $reason', async ({ reason, status, authorization }) => {
    const value = await authorization(issuer);
    const headers: [string, string][] = (value === undefined ? [] : Array.isArray(value) ? value : [value]).map((v) => [
      'authorization',
      v,
    ]);
    const res = await request(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: [...headers.flat(), 'content-type', 'application/json'],
      body: '{}',
    });
    const body = (await res.body.json()) as Record<string, string>;

    expect(res.statusCode).toBe(status);
    expect(body.reason).toBe(reason);
    expect(body.error).toBe(reason === 'missing_token' ? 'unauthorized' : 'invalid_token');
    expect(body.error_description).toEqual(expect.any(String));
    const challenge = res.headers['www-authenticate'];
    if (reason === 'missing_token') {
      expect(challenge).toBe(`Bearer resource_metadata="${METADATA}"`);
    } else {
      expect(challenge).toMatch(new RegExp(`^Bearer resource_metadata="${METADATA}", error="invalid_token", error_description="[^"]+"$`));
    }
    for (const v of headers.map(([, v]) => v)) {
      const token = v.replace(/^Bearer /, '');
      if (token.length > 8) {
        expect(JSON.stringify(body)).not.toContain(token);
        expect(String(challenge)).not.toContain(token);
      }
    }
    expect(upstream.seen).toHaveLength(0);
  });

  it('accepts a token expired 10 s ago (default tolerance 30 s) and one with only an accepted aud', async () => {
    const recent = await issuer.mint({ exp: now() - 10 });
    expect((await request(`${sidecar.url}/x`, { headers: { authorization: bearer(recent) } })).statusCode).toBe(200);
    upstream.seen.length = 0;
  });
});

describe('audience rules', () => {
  it('accepts aud in OIDC_AUDIENCES without azp, and rejects the Coder azp when only audiences are configured', async () => {
    const issuer = await startIssuer();
    await issuer.addKey('ES256');
    const upstream = await startUpstream();
    const sidecar = await startSidecar(testEnv(issuer, upstream, { OIDC_ALLOWED_AZP: '', OIDC_AUDIENCES: 'datastore-mcp,other' }));
    try {
      const withAud = await issuer.mint({ aud: ['account', 'datastore-mcp'], azp: 'coder' });
      expect((await request(sidecar.url, { headers: { authorization: bearer(withAud) } })).statusCode).toBe(200);
      const onlyAzp = await issuer.mint({ aud: 'account', azp: 'coder' });
      const res = await request(sidecar.url, { headers: { authorization: bearer(onlyAzp) } });
      expect(res.statusCode).toBe(401);
      expect(((await res.body.json()) as { reason: string }).reason).toBe('wrong_audience');
      expect(upstream.seen).toHaveLength(1);
    } finally {
      await sidecar.close();
      await upstream.close();
      await issuer.close();
    }
  });
});

describe('authorization by group or role', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey('PS256');
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream, { REQUIRED_GROUPS: '/bravo', REQUIRED_ROLES: 'datastore-reader' }));
  });
  afterAll(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  it('answers 403 insufficient_scope without the group or the role', async () => {
    const token = await issuer.mint({ groups: ['/alpha'], realm_access: { roles: ['offline_access'] } });
    const res = await request(sidecar.url, { headers: { authorization: bearer(token) } });
    expect(res.statusCode).toBe(403);
    expect(await res.body.json()).toEqual({ error: 'insufficient_scope', reason: 'forbidden', error_description: expect.any(String) });
    expect(res.headers['www-authenticate']).toMatch(new RegExp(`^Bearer resource_metadata="${METADATA}", error="insufficient_scope"`));
    expect(upstream.seen).toHaveLength(0);
  });

  it('accepts a token holding the group, or the realm role', async () => {
    const byGroup = await issuer.mint({ groups: ['/alpha', '/bravo'], realm_access: { roles: [] } });
    const byRole = await issuer.mint({ groups: [], realm_access: { roles: ['datastore-reader'] } });
    expect((await request(sidecar.url, { headers: { authorization: bearer(byGroup) } })).statusCode).toBe(200);
    expect((await request(sidecar.url, { headers: { authorization: bearer(byRole) } })).statusCode).toBe(200);
    expect(upstream.seen).toHaveLength(2);
  });
});

describe('key set unavailable', () => {
  it('answers 503 temporarily_unavailable while no key set could be loaded', async () => {
    const issuer = await startIssuer();
    await issuer.addKey();
    const upstream = await startUpstream();
    const sidecar = await startSidecar(testEnv(issuer, upstream, { OIDC_JWKS_URI: 'http://127.0.0.1:1/certs' }));
    try {
      const res = await request(sidecar.url, { headers: { authorization: bearer(await issuer.mint()) } });
      expect(res.statusCode).toBe(503);
      expect(res.headers['retry-after']).toBe('5');
      expect(res.headers['www-authenticate']).toBe(`Bearer resource_metadata="${METADATA}"`);
      expect(await res.body.json()).toEqual({
        error: 'temporarily_unavailable',
        reason: 'jwks_unavailable',
        error_description: expect.any(String),
      });
      expect(upstream.seen).toHaveLength(0);
    } finally {
      await sidecar.close();
      await upstream.close();
      await issuer.close();
    }
  });
});
