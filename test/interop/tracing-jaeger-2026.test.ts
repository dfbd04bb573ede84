import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RPC_CODES } from '../../src/lib/errors.js';
import type { TestIssuer } from '../helpers/issuer.js';
import type { TestUpstream } from '../helpers/upstream.js';
import { startStack, type RunningSidecar, type TestStack } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { findTool, skipMissing } from '../helpers/tools.js';
import { clientContext, hex, tracingEnv, useJaeger, type StoredSpan } from '../helpers/jaeger.js';

// MCP 2026-07-28 clients carry their trace context in each request's `params._meta`, often with
// no traceparent header (no session to hang one on). The four outcomes an operator looks a tool
// call up for, as Jaeger stores them: accepted, refused token, policy denial, rate limited, each
// under the client's span, the guards' decisions (the rate limit's Redis round trip) below the
// call's span, and the upstream receiving the sidecar's span as its parent. Rate limits count in
// a real Redis.

const jaeger = useJaeger();
const redisServer = findTool('redis-server');
if (!redisServer) skipMissing('redis-server');

const VERSION = '2026-07-28';
const POLICY = `
rules:
  - name: everyone-calls-tools
    effect: allow
    when: mcp.method == "tools/call"
  - name: nobody-deletes
    effect: deny
    when: mcp.tool == "delete_everything"
limits:
  userPerMinute: 1000
  tools:
    count: { perMinute: 1 }
`;
/** Argument values and a `_meta` value that must never reach a span. */
const SECRET_ARGUMENT = 'argument-value-2026-c41e';
const SECRET_META = 'meta-value-2026-9b07';

describe.skipIf(!jaeger || !redisServer)('MCP 2026-07-28: trace context in _meta, in Jaeger', () => {
  let stack: TestStack | undefined;
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let redis: TestRedis;
  let sidecar: RunningSidecar;
  let log: CapturedLog;
  let token: string;
  const service = `sidecar-2026-guards-${hex(4)}`;

  /** A 2026-07-28 tools/call whose `_meta` carries `traceparent` (and the header too when given). */
  const call = (tool: string, traceparent: string, options: { bearer?: string; header?: string; id?: number } = {}) =>
    fetch(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${options.bearer ?? token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': VERSION,
        'mcp-method': 'tools/call',
        'mcp-name': tool,
        ...(options.header === undefined ? {} : { traceparent: options.header }),
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: options.id ?? 1,
        method: 'tools/call',
        params: {
          name: tool,
          arguments: { query: SECRET_ARGUMENT },
          _meta: {
            'io.modelcontextprotocol/protocolVersion': VERSION,
            'io.modelcontextprotocol/clientCapabilities': {},
            'com.example/note': SECRET_META,
            traceparent,
            tracestate: 'vendor=2026',
          },
        },
      }),
    });

  /** The trace once the tools/call span has `children` children; the call's span, its children, the request span it links. */
  const callSpans = async (traceId: string, children: number) => {
    const spans = await jaeger!.trace(traceId, (all) => {
      const found = all.find((span) => span.attributes['mcp.method.name'] === 'tools/call');
      return found !== undefined && all.filter((span) => span.parentId === found.spanId).length >= children;
    });
    const message = spans.find((span) => span.attributes['mcp.method.name'] === 'tools/call')!;
    return { spans, message, children: spans.filter((span) => span.parentId === message.spanId) };
  };
  const childNamed = (children: StoredSpan[], name: string) => children.find((span) => span.name === name);

  beforeAll(async () => {
    await jaeger!.ready();
    redis = await startRedis();
    const policyFile = join(mkdtempSync(join(tmpdir(), 'policy-')), 'policy.yaml');
    writeFileSync(policyFile, POLICY);
    log = captureLog();
    stack = await startStack(
      { LOG_LEVEL: 'info', POLICY_FILE: policyFile, REDIS_URL: redis.url, REDIS_TIMEOUT_MS: '200', ...tracingEnv(jaeger!, service) },
      { logger: log.logger },
    );
    ({ issuer, upstream, sidecar } = stack);
    upstream.handle((_req, res, body) => {
      const message = JSON.parse(body) as { id?: number };
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { resultType: 'complete', content: [] } }));
    });
    token = await issuer.mint();
  });
  afterAll(async () => {
    await stack?.close();
    await redis?.close();
  });

  it('an accepted call: under the client’s span, both decisions (the Redis round trip), the upstream under the call', async () => {
    const client = clientContext();
    const seen = upstream.seen.length;
    const response = await call('lookup', client.traceparent, { id: 11 });
    expect(response.status).toBe(200);
    await response.text();
    const { spans, message, children } = await callSpans(client.traceId, 3);
    expect(message).toMatchObject({
      kind: 'server',
      service,
      parentId: client.spanId,
      attributes: {
        'mcp.method.name': 'tools/call',
        'gen_ai.tool.name': 'lookup',
        'gen_ai.operation.name': 'execute_tool',
        'jsonrpc.request.id': '11',
        'mcp.protocol.version': VERSION,
        'network.transport': 'tcp',
        'network.protocol.name': 'http',
        'network.protocol.version': '1.1',
        'mcp_auth.argument_names': expect.stringContaining('query'),
        'mcp_auth.outcome': 'result',
      },
    });
    expect(message.status).toBeUndefined();
    expect(message.attributes).not.toHaveProperty('error.type');
    expect(message.attributes).not.toHaveProperty('mcp.session.id');
    // The HTTP request's span is linked: a trace of its own (the client sent no header).
    expect(message.links).toHaveLength(1);
    const [request] = (await jaeger!.trace(message.links[0]!.traceId, (all) => all.length >= 1)).filter(
      (span) => span.spanId === message.links[0]!.spanId,
    );
    expect(request).toMatchObject({ name: 'POST /*', kind: 'server', parentId: undefined });
    expect(request!.attributes).toMatchObject({ 'http.response.status_code': 200, 'user.name': 'alice' });
    expect(childNamed(children, 'tool policy')).toMatchObject({
      kind: 'internal',
      attributes: { 'mcp_auth.policy.decision': 'allow', 'mcp_auth.policy.rule': 'everyone-calls-tools', 'mcp_auth.policy.dry_run': false },
    });
    expect(childNamed(children, 'rate limits')).toMatchObject({
      kind: 'internal',
      attributes: { 'mcp_auth.rate_limit.store': 'redis', 'mcp_auth.rate_limit.limited': false },
    });
    const upstreamSpan = childNamed(children, 'POST')!;
    expect(upstreamSpan).toMatchObject({
      kind: 'client',
      attributes: { 'http.response.status_code': 200, 'url.full': `${upstream.url}/mcp` },
    });
    // The upstream got the sidecar's client span as its parent, the client's tracestate beside it.
    expect(upstream.seen.length).toBe(seen + 1);
    expect(upstream.seen.at(-1)!.headers.traceparent).toBe(`00-${client.traceId}-${upstreamSpan.spanId}-01`);
    expect(upstream.seen.at(-1)!.headers.tracestate).toBe('vendor=2026');
    expect(spans.every((span) => span.traceId === client.traceId)).toBe(true);
    const [audit] = await log.waitForAudit((line) => line.tool === 'lookup' && line.traceId === client.traceId);
    expect(audit).toMatchObject({ spanId: message.spanId, outcome: 'result' });
  });

  it('_meta and a traceparent header: the call under _meta’s span, linked to the request under the header’s', async () => {
    const header = clientContext();
    const inBody = clientContext();
    const response = await fetch(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': VERSION,
        'mcp-method': 'tools/call',
        'mcp-name': 'lookup',
        traceparent: header.traceparent,
        tracestate: 'transport=http',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 21,
        method: 'tools/call',
        params: {
          name: 'lookup',
          _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, traceparent: inBody.traceparent, tracestate: 'mcp=meta' },
        },
      }),
    });
    expect(response.status).toBe(200);
    await response.text();
    const { message, children } = await callSpans(inBody.traceId, 3);
    expect(message.parentId).toBe(inBody.spanId);
    expect(message.links).toHaveLength(1);
    expect(message.links[0]!.traceId).toBe(header.traceId);
    const transport = await jaeger!.trace(header.traceId, (all) => all.some((span) => span.spanId === message.links[0]!.spanId));
    expect(transport.find((span) => span.spanId === message.links[0]!.spanId)).toMatchObject({ name: 'POST /*', parentId: header.spanId });
    // The upstream joins _meta's trace, with _meta's tracestate (the header's belongs to the other trace).
    const upstreamSpan = childNamed(children, 'POST')!;
    expect(upstream.seen.at(-1)!.headers.traceparent).toBe(`00-${inBody.traceId}-${upstreamSpan.spanId}-01`);
    expect(upstream.seen.at(-1)!.headers.tracestate).toBe('mcp=meta');
    const [audit] = await log.waitForAudit((line) => line.traceId === inBody.traceId);
    expect(audit).toMatchObject({ spanId: message.spanId });
  });

  it('a policy denial: the rule on its span, the JSON-RPC code as error.type, nothing upstream', async () => {
    const client = clientContext();
    const seen = upstream.seen.length;
    const response = await call('delete_everything', client.traceparent, { id: 12 });
    const answer = (await response.json()) as { error?: { code: number } };
    expect(answer.error?.code).toBe(RPC_CODES.policyDenied);
    const { message, children } = await callSpans(client.traceId, 1);
    expect(message).toMatchObject({
      parentId: client.spanId,
      status: 'ERROR',
      attributes: {
        'gen_ai.tool.name': 'delete_everything',
        'jsonrpc.request.id': '12',
        'mcp_auth.outcome': 'denied',
        'error.type': String(RPC_CODES.policyDenied),
        'rpc.response.status_code': String(RPC_CODES.policyDenied),
      },
    });
    // Denied before the rate limit counted it.
    expect(children.map((span) => span.name)).toEqual(['tool policy']);
    expect(children[0]).toMatchObject({ attributes: { 'mcp_auth.policy.decision': 'deny', 'mcp_auth.policy.rule': 'nobody-deletes' } });
    expect(upstream.seen.length).toBe(seen);
  });

  it('a rate-limited call: limited in Redis, the scope on its span, nothing upstream', async () => {
    // One call a minute: the second is limited, or the third when a window began between them.
    let client = clientContext();
    let seen = upstream.seen.length;
    let answer: { error?: { code: number } } = {};
    for (let i = 0; i < 3 && answer.error === undefined; i++) {
      client = clientContext();
      seen = upstream.seen.length;
      answer = (await (await call('count', client.traceparent, { id: 13 + i })).json()) as typeof answer;
    }
    expect(answer.error?.code).toBe(RPC_CODES.rateLimited);
    const { message, children } = await callSpans(client.traceId, 2);
    expect(message).toMatchObject({
      parentId: client.spanId,
      status: 'ERROR',
      attributes: {
        'gen_ai.tool.name': 'count',
        'mcp_auth.outcome': 'limited',
        'error.type': String(RPC_CODES.rateLimited),
        'rpc.response.status_code': String(RPC_CODES.rateLimited),
      },
    });
    expect(children.map((span) => span.name).sort()).toEqual(['rate limits', 'tool policy']);
    expect(childNamed(children, 'rate limits')).toMatchObject({
      attributes: { 'mcp_auth.rate_limit.store': 'redis', 'mcp_auth.rate_limit.limited': true, 'mcp_auth.rate_limit.scope': 'tool' },
    });
    expect(upstream.seen.length).toBe(seen);
  });

  it('Redis down: the rate-limit span says backend_error, the call still goes (RATE_LIMIT_ON_REDIS_ERROR=allow)', async () => {
    await redis.stop();
    try {
      const client = clientContext();
      const response = await call('status', client.traceparent, { id: 15 });
      expect(response.status).toBe(200);
      await response.text();
      const { message, children } = await callSpans(client.traceId, 3);
      expect(message).toMatchObject({ parentId: client.spanId, attributes: { 'mcp_auth.outcome': 'result' } });
      expect(childNamed(children, 'rate limits')).toMatchObject({
        status: 'ERROR',
        attributes: {
          'mcp_auth.rate_limit.store': 'redis',
          'mcp_auth.rate_limit.limited': false,
          'mcp_auth.rate_limit.backend_error': true,
          'error.type': 'backend_error',
        },
      });
    } finally {
      await redis.start();
    }
  });

  it('a refused token: the request span under the header’s span; the body (and its _meta) never read', async () => {
    const bad = `${token.slice(0, -8)}AAAAAAAA`;
    // With the header: the refusal is a child of the client's span.
    const header = clientContext();
    const inBody = clientContext();
    const refused = await call('lookup', inBody.traceparent, { bearer: bad, header: header.traceparent });
    expect(refused.status).toBe(401);
    await refused.text();
    const spans = await jaeger!.trace(header.traceId, (all) => all.length >= 2);
    const request = spans.find((span) => span.name === 'POST /*')!;
    expect(request).toMatchObject({
      kind: 'server',
      parentId: header.spanId,
      attributes: { 'http.response.status_code': 401, 'error.type': 'invalid_signature' },
    });
    expect(spans.find((span) => span.name === 'verify token')).toMatchObject({
      parentId: request.spanId,
      status: 'ERROR',
      attributes: { 'error.type': 'invalid_signature' },
    });
    // No MCP span: an unauthenticated body is not read, so its _meta names no parent.
    expect(spans.some((span) => span.attributes['mcp.method.name'] !== undefined)).toBe(false);
    expect(spans).toHaveLength(2);
    expect(await jaeger!.trace(inBody.traceId, () => true)).toEqual([]);

    // Without the header: a trace of its own, found from the request line.
    const refusals = () => log.lines().filter((l) => l.msg === 'request' && l.reason === 'invalid_signature');
    const before = refusals().length;
    const alone = clientContext();
    const again = await call('lookup', alone.traceparent, { bearer: bad });
    expect(again.status).toBe(401);
    await again.text();
    const line = await (async () => {
      for (let i = 0; i < 200; i++) {
        const found = refusals()[before];
        if (found !== undefined) return found;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error('no request line for the second refusal');
    })();
    // The same bad token again: the verdict cache's answer, no verification span.
    const own = await jaeger!.trace(String(line.traceId), (all) => all.length >= 1);
    expect(own).toHaveLength(1);
    expect(own.find((span) => span.name === 'POST /*')).toMatchObject({
      parentId: undefined,
      attributes: { 'error.type': 'invalid_signature' },
    });
    expect(line.traceId).not.toBe(alone.traceId);
    expect(await jaeger!.trace(alone.traceId, () => true)).toEqual([]);
  });

  it('no token, argument value or other _meta value in any span of the run', async () => {
    const traces = await jaeger!.traces(service);
    // The calls above, each in one trace or two (a request span linked from _meta's trace).
    expect(traces.length).toBeGreaterThanOrEqual(8);
    const text = JSON.stringify(traces);
    expect(text).toContain('lookup');
    expect(text).not.toContain(SECRET_ARGUMENT);
    expect(text).not.toContain(SECRET_META);
    for (const part of token.split('.')) expect(text).not.toContain(part);
    expect(text.toLowerCase()).not.toContain('bearer');
    expect(text.toLowerCase()).not.toContain('authorization');
  });
});
