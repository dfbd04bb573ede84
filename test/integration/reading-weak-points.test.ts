import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import type { Guard } from '../../src/mcp/guard.js';

// The weak points found beside the holes: each test fails on be94231.
describe('what the sidecar judges is what the upstream receives: the weak points', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let valuesSidecar: RunningSidecar;
  let log: CapturedLog;
  let valuesLog: CapturedLog;
  let token: string;

  // Hides the tool `secret` from every tools/list, as a policy does.
  const hideSecret: Guard = {
    judge: () => ({ effect: 'allow' }),
    rewrites: (method) => method === 'tools/list',
    rewriteResult: (_message, result) => ({
      ...(result as object),
      tools: (result as { tools: { name: string }[] }).tools.filter((t) => t.name !== 'secret'),
    }),
  };

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    token = await issuer.mint({ sub: 'alice-sub', preferred_username: 'alice' });
    log = captureLog();
    sidecar = await startSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'info' }), { logger: log.logger, guards: [hideSecret] });
    valuesLog = captureLog();
    valuesSidecar = await startSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'info', AUDIT_ARGUMENTS: 'values' }), {
      logger: valuesLog.logger,
    });
  });
  afterAll(async () => {
    await sidecar.close();
    await valuesSidecar.close();
    await upstream.close();
    await issuer.close();
  });

  const post = (target: RunningSidecar, body: unknown, headers: Record<string, string> = {}) =>
    request(`${target.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...headers,
      },
      body: JSON.stringify(body),
      headersTimeout: 5000,
      bodyTimeout: 5000,
    });

  it("a rewritten event stream never carries the upstream's Content-Length: a plain HTTP client gets the whole body, and no more", async () => {
    const event = `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'query' }, { name: 'secret' }] } })}\n\n`;
    upstream.handle((_req, res) => {
      // An upstream that knows its length: Node then sends Content-Length instead of chunks.
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-length': Buffer.byteLength(event) });
      res.end(event);
    });
    const res = await post(sidecar, { jsonrpc: '2.0', id: 1, method: 'tools/list' });
    const text = await res.body.text();
    expect(text).toContain('"query"');
    expect(text).not.toContain('secret');
    const length = res.headers['content-length'];
    if (length !== undefined) expect(Number(length)).toBe(Buffer.byteLength(text));
  });

  it('a Connection header naming Mcp-Session-Id or MCP-Protocol-Version does not take them from the upstream, nor the body type', async () => {
    upstream.handle((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end('{"jsonrpc":"2.0","id":2,"result":{}}');
    });
    const before = upstream.seen.length;
    // node:http sends the Connection header as given (undici sets its own).
    const body = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' });
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpRequest(`${sidecar.url}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          connection: 'keep-alive, mcp-session-id, mcp-protocol-version, content-type, x-verified-user, x-request-id',
          'mcp-session-id': 'session-c',
          'mcp-protocol-version': '2025-11-25',
        },
      });
      req.once('response', resolve).once('error', reject).end(body);
    });
    res.resume();
    await new Promise((resolve) => res.once('end', resolve));
    const seen = upstream.seen[before]!.headers;
    expect(seen).toMatchObject({
      'mcp-session-id': 'session-c',
      'mcp-protocol-version': '2025-11-25',
      'content-type': 'application/json',
      'x-verified-user': 'alice',
      'x-request-id': res.headers['x-request-id'],
    });
    const [line] = await log.waitForAudit((l) => l.rpcId === 2);
    expect(line).toMatchObject({ sessionId: 'session-c', method: 'ping' });
  });

  it("the audit line's reqId is the sidecar's own; the client's X-Request-Id is clientRequestId", async () => {
    upstream.handle((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end('{"jsonrpc":"2.0","id":3,"result":{}}');
    });
    const res = await post(sidecar, { jsonrpc: '2.0', id: 3, method: 'ping' }, { 'x-request-id': 'chosen-by-client' });
    await res.body.text();
    const own = String(res.headers['x-request-id']);
    expect(own).not.toBe('chosen-by-client');
    const [line] = await log.waitForAudit((l) => l.rpcId === 3);
    expect(line).toMatchObject({ reqId: own, clientRequestId: 'chosen-by-client' });
  });

  it('with AUDIT_ARGUMENTS=values, arguments nested 50,000 deep: the call runs, its answer arrives whole, it is audited, no upstream reset counted', async () => {
    upstream.handle((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end('{"jsonrpc":"2.0","id":4,"result":{"content":[]}}');
    });
    const deep = `${'['.repeat(50_000)}${']'.repeat(50_000)}`;
    const before = upstream.seen.length;
    const res = await request(`${valuesSidecar.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json' },
      body: `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"query","arguments":{"deep":${deep}}}}`,
    });
    expect(await res.body.json()).toEqual({ jsonrpc: '2.0', id: 4, result: { content: [] } });
    expect(upstream.seen.length).toBe(before + 1);
    const [line] = await valuesLog.waitForAudit((l) => l.rpcId === 4);
    expect(line).toMatchObject({ tool: 'query', outcome: 'result', argumentNames: ['deep'] });
    expect(String((line!.arguments as { deep: string }).deep)).toMatch(/^\[+…$/);
    const metrics = await (await fetch(`${valuesSidecar.adminUrl}/metrics`)).text();
    expect(metrics).toContain('mcp_auth_upstream_failures_total{kind="reset"} 0');
    expect(metrics).toContain('mcp_auth_audit_failures_total 0');
  });
});
