import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';

describe('a Keycloak access token forwarded by Coder', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey('RS256');
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream));
  });
  afterEach(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  it('is accepted and the upstream sees the identity headers, not the token', async () => {
    const token = await issuer.mint();
    const res = await request(`${sidecar.url}/mcp?x=1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-coder-signature': 'sig' },
      body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
    });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({ ok: true, user: 'alice' });
    expect(upstream.seen).toHaveLength(1);
    const seen = upstream.seen[0]!;
    expect(seen.method).toBe('POST');
    expect(seen.url).toBe('/mcp?x=1');
    expect(seen.body).toBe('{"jsonrpc":"2.0","id":1,"method":"ping"}');
    expect(seen.headers['x-verified-user']).toBe('alice');
    expect(seen.headers['x-verified-subject']).toBe('f0a4c2de-5b1e-4a7d-9c3b-2e8f1d6a7b90');
    expect(seen.headers['x-verified-email']).toBe('alice@example.com');
    expect(seen.headers['x-verified-groups']).toBe('/alpha');
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['x-coder-signature']).toBe('sig');
    expect(seen.headers.host).toBe(new URL(upstream.url).host);
    expect(seen.headers['x-forwarded-host']).toBe(new URL(sidecar.url).host);
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-forwarded-proto']).toBe('http');
  });
});
