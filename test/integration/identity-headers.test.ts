import { afterEach, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';

/** Sends a raw HTTP/1.1 request so header casing and duplicates reach the sidecar exactly as written. */
function rawRequest(url: string, lines: string[]): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(`${lines.join('\r\n')}\r\n\r\n`));
    let response = '';
    socket.setTimeout(10_000, () => socket.destroy(new Error('timeout')));
    socket.on('data', (chunk) => (response += chunk.toString('latin1')));
    socket.on('close', () => resolve(response));
    socket.on('error', reject);
  });
}

describe('identity headers', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar | undefined;

  async function start(env: Record<string, string> = {}) {
    issuer = await startIssuer();
    await issuer.addKey('EdDSA');
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream, env));
    return sidecar;
  }
  afterEach(async () => {
    await sidecar?.close();
    await upstream.close();
    await issuer.close();
  });

  it('drops every spoofed X-Verified-* copy in any casing and sets its own', async () => {
    const { url } = await start();
    const token = await issuer.mint({ groups: ['/alpha', '/bravo'] });
    const response = await rawRequest(url, [
      'GET /mcp HTTP/1.1',
      'Host: mcp.test',
      `Authorization: Bearer ${token}`,
      'X-Verified-User: admin',
      'x-verified-user: root',
      'X-VERIFIED-EMAIL: boss@example.com',
      'X-Verified-Groups: /admins',
      'X-Verified-Issuer: https://evil.example.com/realms/coder',
      'x-VeRiFiEd-Anything: yes',
      'Connection: close',
    ]);
    expect(response).toMatch(/^HTTP\/1\.1 200/);
    const raw = upstream.seen[0]!.rawHeaders;
    const verified = raw
      .filter((_, i) => i % 2 === 0 && raw[i]!.toLowerCase().startsWith('x-verified-'))
      .map((name) => [name.toLowerCase(), raw[raw.indexOf(name) + 1]]);
    expect(verified).toEqual([
      ['x-verified-user', 'alice'],
      ['x-verified-subject', 'f0a4c2de-5b1e-4a7d-9c3b-2e8f1d6a7b90'],
      ['x-verified-issuer', issuer.issuer],
      ['x-verified-email', 'alice@example.com'],
      ['x-verified-groups', '/alpha,/bravo'],
    ]);
  });

  it('drops identity headers spelled with underscores, which WSGI and CGI stacks fold into ours', async () => {
    const { url } = await start();
    const token = await issuer.mint({ groups: ['/alpha'] });
    const response = await rawRequest(url, [
      'GET /mcp HTTP/1.1',
      'Host: mcp.test',
      `Authorization: Bearer ${token}`,
      'X_Verified_User: admin',
      'X-Verified_User: root',
      'X_Verified-Groups: /admins',
      'x_verified_email: boss@example.com',
      'X-VERIFIED_SUBJECT: 0',
      'X_VERIFIED_GROUPS_TRUNCATED: false',
      'X_Verified_Anything: yes',
      'X_Coder_Kept: yes',
      'Connection: close',
    ]);
    expect(response).toMatch(/^HTTP\/1\.1 200/);
    const raw = upstream.seen[0]!.rawHeaders;
    const names = raw.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase().replaceAll('_', '-'));
    expect(names.filter((name) => name.startsWith('x-verified-'))).toEqual([
      'x-verified-user',
      'x-verified-subject',
      'x-verified-issuer',
      'x-verified-email',
      'x-verified-groups',
    ]);
    expect(raw.filter((_, i) => i % 2 === 1)).not.toContain('admin');
    // Underscores elsewhere are not ours to judge.
    expect(upstream.seen[0]!.headers.x_coder_kept).toBe('yes');
  });

  it('forwards X-Verified-Email only when Keycloak verified it, unless FORWARD_UNVERIFIED_EMAIL=true', async () => {
    const { url } = await start();
    const tokens = await Promise.all([
      issuer.mint({ email_verified: true }),
      issuer.mint({ email_verified: false }),
      issuer.mint({}, { omit: ['email_verified'] }),
      issuer.mint({ email_verified: 'true' }),
      issuer.mint({ email_verified: true }),
    ]);
    for (const token of tokens) {
      const res = await request(`${url}/mcp`, { headers: { authorization: `Bearer ${token}`, 'x-verified-email': 'spoofed@example.com' } });
      await res.body.dump();
      expect(res.statusCode).toBe(200);
    }
    // The one identity object shared by a user's tokens does not carry a verified address over.
    expect(upstream.seen.map(({ headers }) => headers['x-verified-email'])).toEqual([
      'alice@example.com',
      undefined,
      undefined,
      undefined,
      'alice@example.com',
    ]);
    await sidecar!.close();
    await upstream.close();
    await issuer.close();

    const relaxed = await start({ FORWARD_UNVERIFIED_EMAIL: 'true' });
    const res = await request(`${relaxed.url}/mcp`, {
      headers: { authorization: `Bearer ${await issuer.mint({ email_verified: false })}` },
    });
    await res.body.dump();
    expect(upstream.seen[0]!.headers['x-verified-email']).toBe('alice@example.com');
  });

  it('accepts a user with 200 groups: every group counts for REQUIRED_GROUPS, the header is cut at a group and says so', async () => {
    const groups = Array.from({ length: 200 }, (_, i) => `/organisation/department-${String(i).padStart(3, '0')}`);
    const { url } = await start({ REQUIRED_GROUPS: '/organisation/department-199', GROUPS_HEADER_MAX_BYTES: '4096' });
    const token = await issuer.mint({ groups });
    expect(groups.join(',').length).toBeGreaterThan(4096);
    const res = await request(`${url}/mcp`, { headers: { authorization: `Bearer ${token}`, 'x-verified-groups-truncated': 'false' } });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
    const seen = upstream.seen[0]!.headers;
    const sent = String(seen['x-verified-groups']);
    expect(sent.length).toBeLessThanOrEqual(4096);
    expect(sent.split(',')).toEqual(groups.slice(0, sent.split(',').length));
    expect(sent.split(',').length).toBeGreaterThan(100);
    expect(seen['x-verified-groups-truncated']).toBe('true');

    // With the default cap the whole list goes, and nothing says truncated.
    const small = await request(`${url}/mcp`, { headers: { authorization: `Bearer ${await issuer.mint({ groups: groups.slice(197) })}` } });
    await small.body.dump();
    expect(upstream.seen[1]!.headers['x-verified-groups']).toBe(groups.slice(197).join(','));
    expect(upstream.seen[1]!.headers['x-verified-groups-truncated']).toBeUndefined();
  });

  it('sends the whole list of 200 groups with the default cap, and a group with a control character is still invalid_claim', async () => {
    const groups = Array.from({ length: 200 }, (_, i) => `/organisation/department-${i}`);
    const { url } = await start();
    const res = await request(`${url}/mcp`, { headers: { authorization: `Bearer ${await issuer.mint({ groups })}` } });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
    expect(upstream.seen[0]!.headers['x-verified-groups']).toBe(groups.join(','));
    const bad = await request(`${url}/mcp`, {
      headers: { authorization: `Bearer ${await issuer.mint({ groups: [...groups, '/x\r\nX-Verified-User: admin'] })}` },
    });
    expect(bad.statusCode).toBe(401);
    expect(await bad.body.json()).toMatchObject({ reason: 'invalid_claim' });
  });

  it("forwards each token's own claims when one user's tokens differ (one identity object per user is shared only while they match)", async () => {
    const { url } = await start();
    const tokens = await Promise.all([
      issuer.mint({ email: 'alice@example.com', groups: ['/alpha'] }),
      issuer.mint({ email: 'alice@new.example.com', groups: ['/alpha'] }),
      issuer.mint({ email: 'alice@new.example.com', groups: ['/alpha', '/bravo'] }),
      issuer.mint({ preferred_username: 'alice2', email: 'alice@new.example.com', groups: ['/alpha', '/bravo'] }),
      issuer.mint({ email: 'alice@example.com', groups: ['/alpha'] }),
    ]);
    for (const token of tokens) {
      const res = await request(`${url}/mcp`, { headers: { authorization: `Bearer ${token}` } });
      await res.body.dump();
      expect(res.statusCode).toBe(200);
    }
    expect(
      upstream.seen.map(({ headers }) => [
        headers['x-verified-user'],
        headers['x-verified-subject'] !== undefined,
        headers['x-verified-email'],
        headers['x-verified-groups'],
      ]),
    ).toEqual([
      ['alice', true, 'alice@example.com', '/alpha'],
      ['alice', true, 'alice@new.example.com', '/alpha'],
      ['alice', true, 'alice@new.example.com', '/alpha,/bravo'],
      ['alice2', true, 'alice@new.example.com', '/alpha,/bravo'],
      ['alice', true, 'alice@example.com', '/alpha'],
    ]);
    expect(new Set(upstream.seen.map(({ headers }) => headers['x-verified-subject'])).size).toBe(1);
  });

  it('a header named by Connection cannot remove the identity the sidecar sets', async () => {
    const { url } = await start();
    const token = await issuer.mint();
    await rawRequest(url, [
      'GET / HTTP/1.1',
      'Host: x',
      `Authorization: Bearer ${token}`,
      'Keep-Alive: timeout=5',
      'Connection: close, X-Verified-User, X-Forwarded-For',
    ]);
    const seen = upstream.seen[0]!.headers;
    expect(seen['x-verified-user']).toBe('alice');
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['keep-alive']).toBeUndefined();
  });

  it('drops the headers a Connection header names, both ways; keep-alive and close name none', async () => {
    const { url } = await start();
    const token = await issuer.mint();
    upstream.handle((_req, res) => {
      res.setHeader('connection', 'Keep-Alive, X-Upstream-Hop');
      res.setHeader('x-upstream-hop', 'only for the proxy');
      res.setHeader('x-upstream-kept', 'for the client');
      res.end('{}');
    });
    const answer = await rawRequest(url, [
      'GET / HTTP/1.1',
      'Host: x',
      `Authorization: Bearer ${token}`,
      'X-Client-Hop: only for the proxy',
      'X-Client-Kept: for the upstream',
      'Connection: close, X-Client-Hop',
    ]);
    const seen = upstream.seen[0]!.headers;
    expect(seen['x-client-hop']).toBeUndefined();
    expect(seen['x-client-kept']).toBe('for the upstream');
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(answer.toLowerCase()).not.toContain('x-upstream-hop');
    expect(answer.toLowerCase()).toContain('x-upstream-kept: for the client');

    // The values nearly every peer sends: nothing but the hop-by-hop headers goes.
    upstream.handle((_req, res) => {
      res.setHeader('connection', 'Keep-Alive');
      res.setHeader('x-upstream-kept', 'for the client');
      res.end('{}');
    });
    const plain = await rawRequest(url, [
      'GET / HTTP/1.1',
      'Host: x',
      `Authorization: Bearer ${token}`,
      'X-Client-Kept: yes',
      'Connection: Close',
    ]);
    expect(upstream.seen[1]!.headers['x-client-kept']).toBe('yes');
    expect(plain.toLowerCase()).toContain('x-upstream-kept: for the client');
  });

  it('drops Authorization (unless FORWARD_AUTHORIZATION=true), Proxy-Authorization and hop-by-hop headers; keeps the rest unchanged', async () => {
    const { url } = await start();
    const token = await issuer.mint();
    const res = await request(`${url}/mcp`, {
      headers: {
        authorization: `Bearer ${token}`,
        'proxy-authorization': 'Basic eA==',
        te: 'trailers',
        'x-coder-signature': 'v1=abc',
        'x-coder-timestamp': '1700000000',
        'mcp-session-id': 's-1',
        'mcp-protocol-version': '2025-06-18',
        'last-event-id': 'ev-9',
        accept: 'application/json, text/event-stream',
        'x-forwarded-for': '10.0.0.7',
        'x-forwarded-proto': 'https',
        host: 'mcp.example.com',
      },
    });
    expect(res.statusCode).toBe(200);
    const seen = upstream.seen[0]!.headers;
    expect(seen.authorization).toBeUndefined();
    expect(seen['proxy-authorization']).toBeUndefined();
    expect(seen.te).toBeUndefined();
    expect(seen['x-coder-signature']).toBe('v1=abc');
    expect(seen['x-coder-timestamp']).toBe('1700000000');
    expect(seen['mcp-session-id']).toBe('s-1');
    expect(seen['mcp-protocol-version']).toBe('2025-06-18');
    expect(seen['last-event-id']).toBe('ev-9');
    expect(seen.accept).toBe('application/json, text/event-stream');
    expect(seen.host).toBe(new URL(upstream.url).host);
    expect(seen['x-forwarded-host']).toBe('mcp.example.com');
    expect(seen['x-forwarded-for']).toBe('10.0.0.7, 127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('https, http');
  });

  it('keeps the bearer token for the upstream with FORWARD_AUTHORIZATION=true', async () => {
    const { url } = await start({ FORWARD_AUTHORIZATION: 'true' });
    const token = await issuer.mint();
    await request(url, { headers: { authorization: `Bearer ${token}` } });
    expect(upstream.seen[0]!.headers.authorization).toBe(`Bearer ${token}`);
  });

  it('response headers of the upstream (Mcp-Session-Id, content type) reach the client', async () => {
    const { url } = await start();
    upstream.handle((_req, res) => {
      res.writeHead(200, { 'mcp-session-id': 'sess-42', 'mcp-protocol-version': '2025-06-18', 'content-type': 'application/json' });
      res.end('{}');
    });
    const res = await request(url, { headers: { authorization: `Bearer ${await issuer.mint()}` } });
    expect(res.headers['mcp-session-id']).toBe('sess-42');
    expect(res.headers['mcp-protocol-version']).toBe('2025-06-18');
    await res.body.text();
  });

  it.each(['josé', '日本語ユーザー', 'Zoë 🚀'])('forwards the non-Latin-1 user %s as its UTF-8 octets', async (name) => {
    const { url } = await start();
    const res = await request(url, {
      headers: { authorization: `Bearer ${await issuer.mint({ preferred_username: name, email: `${name}@example.com` })}` },
    });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    // Node hands header bytes to JS as Latin-1: the octets decode back to the claim as UTF-8.
    const seen = upstream.seen[0]!.headers;
    expect(Buffer.from(String(seen['x-verified-user']), 'latin1').toString('utf8')).toBe(name);
    expect(Buffer.from(String(seen['x-verified-email']), 'latin1').toString('utf8')).toBe(`${name}@example.com`);
  });

  it('rejects a group containing a comma or a newline as invalid_claim', async () => {
    const { url } = await start();
    for (const groups of [['/a,b'], ['/a\nb'], 'not-a-list']) {
      const res = await request(url, { headers: { authorization: `Bearer ${await issuer.mint({ groups })}` } });
      expect(res.statusCode).toBe(401);
      expect(((await res.body.json()) as { reason: string }).reason).toBe('invalid_claim');
    }
    expect(upstream.seen).toHaveLength(0);
  });

  // HTTP trims white space around a header value (and Go's and Node's readers with it), the policy
  // does not: a user " alice" would be "alice" upstream. Such a claim is refused, never trimmed.
  it.each([
    { preferred_username: ' alice' },
    { preferred_username: 'alice ' },
    { preferred_username: 'alice\u00a0' },
    { preferred_username: '\u3000alice' },
    { sub: 'u-1 ' },
    { groups: ['/alpha', ' /bravo'] },
    { groups: ['/alpha\t'] },
  ])('rejects a claim with white space at either end as invalid_claim: %j', async (claims) => {
    const { url } = await start();
    const res = await request(url, { headers: { authorization: `Bearer ${await issuer.mint(claims)}` } });
    expect(res.statusCode).toBe(401);
    expect(((await res.body.json()) as { reason: string }).reason).toBe('invalid_claim');
    expect(upstream.seen).toHaveLength(0);
  });

  it('forwards claims with white space inside them', async () => {
    const { url } = await start();
    const res = await request(url, {
      headers: { authorization: `Bearer ${await issuer.mint({ preferred_username: 'Alice Smith', groups: ['/team a', '/b'] })}` },
    });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    expect(upstream.seen[0]!.headers).toMatchObject({ 'x-verified-user': 'Alice Smith', 'x-verified-groups': '/team a,/b' });
  });
});
