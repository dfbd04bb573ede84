// A tool call the policy refuses only for scopes the token lacks: HTTP 403 with
// `WWW-Authenticate: Bearer error="insufficient_scope", scope="…", resource_metadata="…"` (the MCP
// authorization spec's step-up), for JSON and SSE requests, both protocol eras and the legacy
// transport's POST; and a client that reads the challenge, gets a token with those scopes and
// retries. Rules of several issuers meet here too: `token.iss` in a rule.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { captureLog } from '../helpers/log-capture.js';

const POLICY = `rules:
  - name: alpha-reads
    effect: allow
    when: '"/alpha" in groups && mcp.method == "tools/call" && mcp.tool == "query"'
  - name: alpha-drops-with-write
    effect: allow
    when: '"/alpha" in groups && mcp.method == "tools/call" && mcp.tool == "drop"'
    scopes: [datastore.write, datastore.admin]
  - name: alpha-exports-with-export
    effect: allow
    when: '"/alpha" in groups && mcp.method == "tools/call" && mcp.tool == "export"'
    scopes: [datastore.export]
  - name: partners-query-only-partner-tables
    effect: allow
    when: 'token.iss.endsWith("/realms/partners") && mcp.tool == "partner_query"'
`;

const call = (id: number, tool: string) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: tool, arguments: {} } });

describe('scopes in the tool policy', () => {
  let issuer: TestIssuer;
  let partners: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  const log = captureLog();
  const metadata = 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp';

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    partners = await startIssuer({ realmPath: '/realms/partners' });
    await partners.addKey();
    upstream = await startUpstream();
    const dir = mkdtempSync(join(tmpdir(), 'scopes-'));
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    writeFileSync(join(dir, 'issuers.yaml'), `- issuer: ${partners.issuer}\n  allowedAzp: [coder]\n`);
    sidecar = await startSidecar(
      testEnv(issuer, upstream, {
        POLICY_FILE: join(dir, 'policy.yaml'),
        ISSUERS_FILE: join(dir, 'issuers.yaml'),
        RESOURCE_URL: 'https://mcp.example.com/mcp',
        RESOURCE_SCOPES: 'openid,datastore',
        LOG_LEVEL: 'info',
      }),
      { logger: log.logger },
    );
  }, 60_000);
  afterAll(async () => {
    await sidecar?.close();
    await Promise.all([issuer?.close(), partners?.close(), upstream?.close()]);
  });

  async function post(token: string, body: unknown, headers: Record<string, string> = {}, path = '/mcp') {
    const res = await request(`${sidecar.url}${path}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...headers,
      },
      body: JSON.stringify(body),
    });
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
  }

  it('answers 403 insufficient_scope with every scope the call needs, for each transport and era, and forwards nothing', async () => {
    const token = await issuer.mint({ scope: 'openid datastore.write' });
    const seen = upstream.seen.length;
    // A 2026-07-28 request carries its protocol version and capabilities in _meta.
    const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };
    const call2026 = { ...call(1, 'drop'), params: { name: 'drop', arguments: {}, _meta: meta } };
    for (const [headers, path, body] of [
      [{}, '/mcp', call(1, 'drop')],
      [{ accept: 'text/event-stream, application/json' }, '/mcp', call(1, 'drop')],
      [{ 'mcp-protocol-version': '2025-06-18' }, '/mcp', call(1, 'drop')],
      [{ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'drop' }, '/mcp', call2026],
      // The 2024-11-05 HTTP+SSE transport POSTs to the endpoint its stream named.
      [{ accept: 'application/json' }, '/messages?sessionId=abc', call(1, 'drop')],
    ] as const) {
      const answer = await post(token, body, headers, path);
      expect(answer.status, JSON.stringify(headers)).toBe(403);
      expect(answer.headers['www-authenticate']).toBe(
        `Bearer error="insufficient_scope", scope="datastore.write datastore.admin", resource_metadata="${metadata}", error_description="the token lacks a scope this request needs (datastore.write datastore.admin)"`,
      );
      expect(JSON.parse(answer.body)).toEqual({
        error: 'insufficient_scope',
        error_description: 'the token lacks a scope this request needs (datastore.write datastore.admin)',
        scope: 'datastore.write datastore.admin',
      });
    }
    expect(upstream.seen.length).toBe(seen);
    const audit = await log.waitForAudit((l) => l.tool === 'drop' && l.outcome === 'denied');
    expect(audit[0]).toMatchObject({ policyRule: 'alpha-drops-with-write', issuer: issuer.issuer });
  });

  it('puts the scopes of every message of a batch in one challenge; a batch with another denial gets JSON-RPC errors', async () => {
    const token = await issuer.mint({ scope: 'openid' });
    const both = await post(token, [call(1, 'drop'), call(2, 'export')]);
    expect(both.status).toBe(403);
    expect(both.headers['www-authenticate']).toContain('scope="datastore.write datastore.admin datastore.export"');
    const mixed = await post(token, [call(1, 'drop'), call(2, 'unknown_tool')]);
    expect(mixed.status).toBe(200);
    expect((JSON.parse(mixed.body) as { error: { message: string } }[]).map((r) => r.error.message)).toEqual([
      'Forbidden: tools/call of "drop" is not allowed by the tool policy without the scopes datastore.write datastore.admin',
      'Forbidden: tools/call of "unknown_tool" is not allowed by the tool policy',
    ]);
  });

  it('a client that reads the challenge steps up: a token with the named scopes is forwarded', async () => {
    let scope = 'openid';
    let token = await issuer.mint({ scope });
    let answer = await post(token, call(7, 'drop'));
    for (let attempt = 0; answer.status === 403 && attempt < 2; attempt++) {
      const challenge = String(answer.headers['www-authenticate']);
      expect(challenge).toMatch(/^Bearer error="insufficient_scope"/);
      // What the MCP spec asks of the client: the scopes it had, plus those the challenge names.
      const named = /scope="([^"]*)"/.exec(challenge)![1]!.split(' ');
      scope = [...new Set([...scope.split(' '), ...named])].join(' ');
      token = await issuer.mint({ scope });
      answer = await post(token, call(7, 'drop'));
    }
    expect(answer.status).toBe(200);
    expect(scope).toBe('openid datastore.write datastore.admin');
    expect(JSON.parse(upstream.seen.at(-1)!.body)).toMatchObject({ id: 7, params: { name: 'drop' } });
  });

  it("a 401 names RESOURCE_SCOPES; a call nobody may make is a plain denial; token.iss tells the issuers' users apart", async () => {
    const missing = await request(`${sidecar.url}/mcp`, { method: 'POST' });
    await missing.body.text();
    expect(missing.headers['www-authenticate']).toBe(`Bearer resource_metadata="${metadata}", scope="openid datastore"`);
    const bob = await issuer.mint({ groups: ['/bravo'], scope: 'openid' });
    const plain = await post(bob, call(3, 'drop'));
    expect(plain.status).toBe(200);
    expect(plain.headers['www-authenticate']).toBeUndefined();
    expect(JSON.parse(plain.body)).toMatchObject({
      id: 3,
      error: { message: 'Forbidden: tools/call of "drop" is not allowed by the tool policy' },
    });
    expect((await post(await partners.mint({ groups: [] }), call(4, 'partner_query'))).status).toBe(200);
    expect(upstream.seen.at(-1)!.headers['x-verified-issuer']).toBe(partners.issuer);
    const coder = await post(await issuer.mint(), call(5, 'partner_query'));
    expect(JSON.parse(coder.body)).toMatchObject({ id: 5, error: { message: expect.stringContaining('not allowed') } });
  });
});
