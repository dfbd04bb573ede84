import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { KeyObject, createPublicKey, sign } from 'node:crypto';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from 'jose';
import { startIssuer, keycloakClaims, type SigningKey, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

interface Attack {
  name: string;
  /** The rejection documented reason, or 'accept' where the input is legitimate after all. */
  expect: string;
  authorization: () => Promise<string | string[]>;
}

describe('JWT attacks: each gets the documented answer, never a 5xx, never the upstream', () => {
  let issuer: TestIssuer;
  let rsa: SigningKey;
  let ec: SigningKey;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let attacker: Server;
  let attackerUrl: string;
  let attackerHits = 0;

  beforeAll(async () => {
    issuer = await startIssuer();
    rsa = await issuer.addKey('RS256');
    ec = await issuer.addKey('ES256');
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream));
    attacker = createServer((_req, res) => {
      attackerHits++;
      res.end('{"keys":[]}');
    });
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
    attackerUrl = `http://127.0.0.1:${(attacker.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
    attacker.close();
    // No header ever made the sidecar fetch a key from where the token said.
    expect(attackerHits).toBe(0);
  });

  const claims = () => keycloakClaims(issuer.issuer);
  const bearer = (token: string) => `Bearer ${token}`;
  /** A token with the given header and payload, its signature by `key` over the exact bytes given. */
  const signRaw = async (header: Record<string, unknown>, payload: string, key: SigningKey = rsa) => {
    // By hand: jose refuses to make some of these on purpose.
    const input = `${b64({ alg: key.alg, kid: key.kid, ...header })}.${b64(payload)}`;
    const signature = sign('sha256', Buffer.from(input), KeyObject.from(key.privateKey as never));
    return `${input}.${signature.toString('base64url')}`;
  };
  const attackerSigned = async (header: Record<string, unknown>) => {
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    const jwk = await exportJWK(publicKey);
    return new SignJWT(claims())
      .setProtectedHeader({ alg: 'RS256', kid: rsa.kid, ...header, ...(header.jwk ? { jwk } : {}) } as never)
      .sign(privateKey);
  };
  const hmacWith = async (alg: string, secret: string) =>
    new SignJWT(claims()).setProtectedHeader({ alg, kid: rsa.kid }).sign(new TextEncoder().encode(secret));
  /** A token the sidecar has just accepted. */
  const acceptedToken = async () => {
    const token = await issuer.mint();
    const res = await request(`${sidecar.url}/mcp`, { headers: { authorization: bearer(token) } });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
    return token;
  };
  const tamper = (token: string, change: (signature: string) => string) => {
    const [h, p, s] = token.split('.');
    return `${h}.${p}.${change(s!)}`;
  };

  const attacks: Attack[] = [
    ...['none', 'None', 'NONE', 'nOnE'].map((alg) => ({
      name: `alg ${alg}`,
      expect: 'unsupported_algorithm',
      authorization: async () => bearer(`${b64({ alg, typ: 'JWT' })}.${b64(claims())}.`),
    })),
    ...['HS256', 'HS384', 'HS512'].map((alg) => ({
      name: `${alg} with the public key (PEM) as the secret`,
      expect: 'unsupported_algorithm',
      authorization: async () =>
        bearer(await hmacWith(alg, await exportSPKI(createPublicKey({ key: rsa.publicJwk as never, format: 'jwk' }) as never))),
    })),
    {
      name: 'HS256 with the public JWK as the secret',
      expect: 'unsupported_algorithm',
      authorization: async () => bearer(await hmacWith('HS256', JSON.stringify(rsa.publicJwk))),
    },
    {
      name: "jku pointing at the attacker's key set",
      expect: 'invalid_signature',
      authorization: async () => bearer(await attackerSigned({ jku: `${attackerUrl}/jwks` })),
    },
    {
      name: "x5u pointing at the attacker's certificate",
      expect: 'invalid_signature',
      authorization: async () => bearer(await attackerSigned({ x5u: `${attackerUrl}/cert.pem` })),
    },
    {
      name: "jwk header with the attacker's key",
      expect: 'invalid_signature',
      authorization: async () => bearer(await attackerSigned({ jwk: true })),
    },
    {
      name: "x5c header with the attacker's chain",
      expect: 'invalid_signature',
      authorization: async () => bearer(await attackerSigned({ x5c: ['MIIBszCCAVmgAwIBAgIU'] })),
    },
    {
      name: 'jku with an unknown kid',
      expect: 'unknown_key',
      authorization: async () => bearer(await attackerSigned({ jku: `${attackerUrl}/jwks`, kid: 'attacker-kid' })),
    },
    ...['../../../etc/passwd', "' OR 1=1 --", 'a\u0000b', '%00', '${jndi:ldap://x}'].map((kid) => ({
      name: `kid ${JSON.stringify(kid)}`,
      expect: 'unknown_key',
      authorization: async () => bearer(await issuer.mint({}, { header: { kid } })),
    })),
    {
      name: 'kid not a string',
      expect: 'malformed_token',
      authorization: async () => bearer(await signRaw({ kid: 42 }, JSON.stringify(claims()))),
    },
    {
      name: 'kid of 5000 characters',
      expect: 'malformed_token',
      authorization: async () => bearer(await issuer.mint({}, { header: { kid: 'k'.repeat(5000) } })),
    },
    {
      name: 'unknown crit',
      expect: 'malformed_token',
      authorization: async () => bearer(await signRaw({ crit: ['x-custom'], 'x-custom': 1 }, JSON.stringify(claims()))),
    },
    {
      name: 'b64: false',
      expect: 'malformed_token',
      authorization: async () => bearer(await signRaw({ b64: false, crit: ['b64'] }, JSON.stringify(claims()))),
    },
    {
      name: 'JWE (five parts)',
      expect: 'malformed_token',
      authorization: async () => bearer(`${b64({ alg: 'RSA-OAEP', enc: 'A256GCM' })}.${b64('k')}.${b64('iv')}.${b64('ct')}.${b64('tag')}`),
    },
    {
      name: 'ES256 with r = s = 0',
      expect: 'invalid_signature',
      authorization: async () => bearer(tamper(await issuer.mint({}, { key: ec }), () => Buffer.alloc(64).toString('base64url'))),
    },
    {
      name: 'ES256 signature in DER form',
      expect: 'invalid_signature',
      authorization: async () =>
        bearer(
          tamper(await issuer.mint({}, { key: ec }), (s) =>
            Buffer.concat([Buffer.from([0x30, 0x44]), Buffer.from(s, 'base64url')]).toString('base64url'),
          ),
        ),
    },
    {
      name: 'signature by another key under the same kid',
      expect: 'invalid_signature',
      authorization: async () => bearer(await attackerSigned({})),
    },
    {
      name: 'truncated signature',
      expect: 'invalid_signature',
      authorization: async () => bearer(tamper(await issuer.mint(), (s) => s.slice(0, -6))),
    },
    {
      name: 'padded signature',
      expect: 'malformed_token',
      authorization: async () => bearer(tamper(await issuer.mint(), (s) => `${s}==`)),
    },
    {
      name: 'bit-flipped signature',
      expect: 'invalid_signature',
      authorization: async () =>
        bearer(
          tamper(await issuer.mint(), (s) => {
            const b = Buffer.from(s, 'base64url');
            b[10]! ^= 1;
            return b.toString('base64url');
          }),
        ),
    },
    { name: 'empty signature', expect: 'invalid_signature', authorization: async () => bearer(tamper(await issuer.mint(), () => '')) },
    // The header of an accepted token is remembered (decoded once): it must vouch for nothing else.
    {
      name: 'payload swapped under a valid signature, header accepted before',
      expect: 'invalid_signature',
      authorization: async () => {
        const [h, , s] = (await acceptedToken()).split('.');
        return bearer(`${h}.${b64({ ...claims(), preferred_username: 'admin' })}.${s}`);
      },
    },
    // The payload is parsed only under a signature that verifies: attacker JSON is never read.
    {
      name: 'payload not JSON, header accepted before',
      expect: 'invalid_signature',
      authorization: async () => {
        const [h, , s] = (await acceptedToken()).split('.');
        return bearer(`${h}.${b64('not json')}.${s}`);
      },
    },
    {
      name: 'payload not JSON under a bad signature',
      expect: 'invalid_signature',
      authorization: async () => bearer(tamper(await signRaw({}, '{"not json'), (s) => `${s.slice(0, -8)}AAAAAAAA`)),
    },
    {
      name: 'payload with duplicate members under a bad signature',
      expect: 'invalid_signature',
      authorization: async () =>
        bearer(
          tamper(
            await signRaw({}, JSON.stringify(claims()).replace(/^\{/, '{"preferred_username":"admin",')),
            (s) => `${s.slice(0, -8)}AAAAAAAA`,
          ),
        ),
    },
    {
      name: 'payload nested 5,000 deep under a garbage signature',
      expect: 'invalid_signature',
      authorization: async () =>
        bearer(
          `${b64({ alg: 'RS256', kid: rsa.kid })}.${b64(`${'['.repeat(5000)}${']'.repeat(5000)}`)}.${Buffer.alloc(256, 7).toString('base64url')}`,
        ),
    },
    {
      name: 'header nested 1,000 deep (parsed before any key is known, so refused by its size)',
      expect: 'malformed_token',
      authorization: async () =>
        bearer(`${b64(`${'{"a":'.repeat(1000)}1${'}'.repeat(1000)}`)}.${b64(claims())}.${Buffer.alloc(256, 7).toString('base64url')}`),
    },
    {
      name: 'payload not JSON, signed by the issuer',
      expect: 'malformed_token',
      authorization: async () => bearer(await signRaw({}, 'not json')),
    },
    {
      name: 'duplicate __proto__ members in the payload',
      expect: 'malformed_token',
      authorization: async () =>
        bearer(await signRaw({}, JSON.stringify(claims()).replace(/^\{/, '{"__proto__":{"admin":true},"__proto__":{},'))),
    },
    {
      name: 'duplicate member names in the payload',
      expect: 'malformed_token',
      authorization: async () => bearer(await signRaw({}, JSON.stringify(claims()).replace(/^\{/, '{"preferred_username":"admin",'))),
    },
    {
      name: 'duplicate member names in the header',
      expect: 'malformed_token',
      authorization: async () => {
        const header = `{"alg":"RS256","kid":"${rsa.kid}","alg":"none"}`;
        return bearer(`${b64(header)}.${b64(claims())}.`);
      },
    },
    {
      name: 'duplicate member names, one written with an escape',
      expect: 'malformed_token',
      authorization: async () => bearer(await signRaw({}, JSON.stringify(claims()).replace(/^\{/, '{"preferred_\\u0075sername":"admin",'))),
    },
    {
      name: 'duplicate member names in a nested object',
      expect: 'malformed_token',
      authorization: async () =>
        bearer(
          await signRaw(
            {},
            JSON.stringify({ ...claims(), realm_access: { roles: ['user'] } }).replace('{"roles"', '{"roles":["admin"],"roles"'),
          ),
        ),
    },
    {
      name: 'a quote and a colon inside string values are not member names',
      expect: 'accept',
      authorization: async () => bearer(await signRaw({}, JSON.stringify({ ...claims(), note: 'a\\"b": "c\\\\', other: ':' }))),
    },
    {
      name: 'exp as a string',
      expect: 'malformed_token',
      authorization: async () => bearer(await issuer.mint({ exp: String(now() + 300) as never })),
    },
    {
      name: 'nbf as a string',
      expect: 'malformed_token',
      authorization: async () => bearer(await issuer.mint({ nbf: 'yesterday' as never })),
    },
    {
      name: 'exp as a float (a valid NumericDate)',
      expect: 'accept',
      authorization: async () => bearer(await issuer.mint({ exp: now() + 300.5 })),
    },
    {
      name: 'exp far in the future, signed by the issuer',
      expect: 'accept',
      authorization: async () => bearer(await issuer.mint({ exp: 1e15 })),
    },
    { name: 'exp 0', expect: 'expired', authorization: async () => bearer(await issuer.mint({ exp: 0 })) },
    {
      name: 'aud a foreign string, azp foreign',
      expect: 'wrong_audience',
      authorization: async () => bearer(await issuer.mint({ aud: 'grafana', azp: 'grafana' })),
    },
    {
      name: 'aud a foreign array, azp foreign',
      expect: 'wrong_audience',
      authorization: async () => bearer(await issuer.mint({ aud: ['grafana', 'account'], azp: 'grafana' })),
    },
    {
      name: 'azp as an array holding coder',
      expect: 'wrong_audience',
      authorization: async () => bearer(await issuer.mint({ azp: ['coder'] as never, aud: 'account' })),
    },
    { name: 'empty token', expect: 'malformed_token', authorization: async () => 'Bearer ' },
    { name: 'white space token', expect: 'malformed_token', authorization: async () => 'Bearer \t  ' },
    {
      name: 'two tokens in one header',
      expect: 'malformed_token',
      authorization: async () => bearer(`${await issuer.mint()} ${await issuer.mint()}`),
    },
    {
      name: 'several Authorization headers',
      expect: 'malformed_token',
      authorization: async () => [bearer(await issuer.mint()), bearer(await issuer.mint())],
    },
    { name: 'scheme Token', expect: 'missing_token', authorization: async () => `Token ${await issuer.mint()}` },
    {
      name: 'lowercase bearer (the scheme is case-insensitive)',
      expect: 'accept',
      authorization: async () => `bearer ${await issuer.mint()}`,
    },
    { name: 'BEARER', expect: 'accept', authorization: async () => `BEARER ${await issuer.mint()}` },
  ];

  it.each(attacks)('$name → $expect', async ({ expect: expected, authorization }) => {
    const value = await authorization();
    const values = Array.isArray(value) ? value : [value];
    const before = upstream.seen.length;
    const res = await request(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: [...values.flatMap((v) => ['authorization', v]), 'content-type', 'application/json'],
      body: '{}',
    });
    const body = (await res.body.json()) as { reason?: string };
    expect(res.statusCode).toBeLessThan(500);
    if (expected === 'accept') {
      expect(res.statusCode).toBe(200);
      expect(upstream.seen.length).toBe(before + 1);
    } else {
      expect(res.statusCode).toBe(401);
      expect(body.reason).toBe(expected);
      expect(upstream.seen.length).toBe(before);
    }
  });
});
