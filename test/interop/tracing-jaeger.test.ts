import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startMcpServer, type McpTestServer } from '../helpers/mcp-server.js';
import { RPC_CODES } from '../../src/lib/errors.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, startStack, testEnv, type RunningSidecar, type TestStack } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { clientContext, hex, tracingEnv, useJaeger, type StoredSpan } from '../helpers/jaeger.js';

// The sidecar's spans as a trace backend stores them (Jaeger all-in-one, read back through its
// query API): under the client's traceparent, with the HTTP semantic conventions' attributes, a
// rejection's reason, and the upstream receiving the sidecar's span as its parent.

const jaeger = useJaeger();

const byName = (spans: StoredSpan[], name: string) => spans.find((span) => span.name === name);

describe.skipIf(!jaeger)('traces in Jaeger', () => {
  let stack: TestStack | undefined;
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let log: CapturedLog;
  let token: string;
  const service = `sidecar-${hex(4)}`;

  beforeAll(async () => {
    await jaeger!.ready();
    log = captureLog();
    // No cooldown between unknown-kid fetches: each test below that needs one gets one.
    stack = await startStack({ LOG_LEVEL: 'info', JWKS_COOLDOWN_SECONDS: '0', ...tracingEnv(jaeger!, service) }, { logger: log.logger });
    ({ issuer, upstream, sidecar } = stack);
    token = await issuer.mint();
  });
  afterAll(() => stack?.close());

  it('an accepted request: its span under the client’s, the upstream’s parent, the request line’s ids', async () => {
    const client = clientContext();
    const response = await fetch(`${sidecar.url}/mcp?token=not-logged`, {
      headers: { authorization: `Bearer ${token}`, traceparent: client.traceparent, 'user-agent': 'coder/2.24' },
    });
    expect(response.status).toBe(200);
    const spans = await jaeger!.trace(client.traceId, (s) => s.length >= 3);
    const server = byName(spans, 'GET /*')!;
    expect(server).toMatchObject({
      kind: 'server',
      service,
      parentId: client.spanId,
      attributes: {
        'http.request.method': 'GET',
        'url.scheme': 'http',
        'url.path': '/mcp',
        'http.route': '/*',
        'http.response.status_code': 200,
        'user_agent.original': 'coder/2.24',
        'user.name': 'alice',
        'client.address': '127.0.0.1',
      },
    });
    expect(server.attributes).not.toHaveProperty('error.type');
    const verification = byName(spans, 'verify token')!;
    expect(verification).toMatchObject({ kind: 'internal', parentId: server.spanId, attributes: { 'mcp_auth.verdict_cache': 'miss' } });
    const call = byName(spans, 'GET')!;
    expect(call).toMatchObject({
      kind: 'client',
      parentId: server.spanId,
      attributes: {
        'http.request.method': 'GET',
        'server.address': '127.0.0.1',
        'server.port': Number(new URL(upstream.url).port),
        'url.full': `${upstream.url}/mcp`,
        'http.response.status_code': 200,
      },
    });
    // The upstream's parent is the sidecar's client span, in the client's trace.
    expect(upstream.seen.at(-1)!.headers.traceparent).toBe(`00-${client.traceId}-${call.spanId}-01`);
    const line = log.lines().find((l) => l.msg === 'request' && l.traceId === client.traceId);
    expect(line).toMatchObject({ spanId: server.spanId, status: 200, decision: 'accept' });
  });

  it('a token the cache already judged: an attribute of the request span, no span of its own', async () => {
    const client = clientContext();
    await (await fetch(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${token}`, traceparent: client.traceparent } })).text();
    const spans = await jaeger!.trace(client.traceId, (s) => s.length >= 2);
    expect(spans.map((s) => s.name).sort()).toEqual(['GET', 'GET /*']);
    expect(byName(spans, 'GET /*')!.attributes['mcp_auth.verdict_cache']).toBe('hit');
  });

  it('a refused token: the reason as error.type, nothing upstream', async () => {
    const client = clientContext();
    const seen = upstream.seen.length;
    const bad = `${token.slice(0, -8)}AAAAAAAA`;
    const response = await fetch(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${bad}`, traceparent: client.traceparent } });
    expect(response.status).toBe(401);
    const spans = await jaeger!.trace(client.traceId, (s) => s.length >= 2);
    const server = byName(spans, 'GET /*')!;
    expect(server).toMatchObject({
      parentId: client.spanId,
      attributes: { 'http.response.status_code': 401, 'error.type': 'invalid_signature' },
    });
    // A 4xx leaves a server span's status unset (the HTTP conventions); the verification failed.
    expect(server.status).toBeUndefined();
    expect(byName(spans, 'verify token')).toMatchObject({
      parentId: server.spanId,
      status: 'ERROR',
      attributes: { 'error.type': 'invalid_signature', 'mcp_auth.verdict_cache': 'miss' },
    });
    expect(spans).toHaveLength(2);
    expect(upstream.seen.length).toBe(seen);
  });

  it('a token signed by a key the sidecar has not seen: the key set fetch under the verification', async () => {
    const key = await issuer.addKey();
    const fresh = await issuer.mint({}, { key });
    const client = clientContext();
    const response = await fetch(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${fresh}`, traceparent: client.traceparent } });
    expect(response.status).toBe(200);
    await response.text();
    const spans = await jaeger!.trace(client.traceId, (s) => s.length >= 4);
    const server = byName(spans, 'GET /*')!;
    const verification = byName(spans, 'verify token')!;
    expect(verification).toMatchObject({ parentId: server.spanId, attributes: { 'mcp_auth.verdict_cache': 'miss' } });
    expect(verification.status).toBeUndefined();
    expect(byName(spans, 'key set fetch')).toMatchObject({
      kind: 'internal',
      parentId: verification.spanId,
      attributes: { 'mcp_auth.jwks.result': 'success' },
    });
    expect(byName(spans, 'key set fetch')!.status).toBeUndefined();
  });

  it('a key set fetch that fails: its outcome and the refusal on the spans', async () => {
    const key = await issuer.addKey();
    const fresh = await issuer.mint({}, { key });
    const client = clientContext();
    issuer.mode = 'status-503';
    try {
      const response = await fetch(`${sidecar.url}/mcp`, {
        headers: { authorization: `Bearer ${fresh}`, traceparent: client.traceparent },
      });
      expect(response.status).toBe(401);
      await response.text();
    } finally {
      issuer.mode = 'ok';
    }
    const spans = await jaeger!.trace(client.traceId, (s) => s.length >= 3);
    const verification = byName(spans, 'verify token')!;
    expect(verification).toMatchObject({
      status: 'ERROR',
      attributes: { 'error.type': expect.stringMatching(/^(unknown_key|jwks_unavailable)$/) },
    });
    expect(byName(spans, 'key set fetch')).toMatchObject({
      parentId: verification.spanId,
      status: 'ERROR',
      attributes: { 'mcp_auth.jwks.result': 'failure' },
    });
    expect(byName(spans, 'GET /*')!.attributes['error.type']).toBe(verification.attributes['error.type']);
  });

  it('a request without a token and without trace context: a trace of its own', async () => {
    const response = await fetch(`${sidecar.url}/mcp`);
    expect(response.status).toBe(401);
    const line = await (async () => {
      for (let i = 0; i < 100; i++) {
        const found = log.lines().findLast((l) => l.msg === 'request' && l.reason === 'missing_token');
        if (found !== undefined) return found;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error('no request line');
    })();
    const spans = await jaeger!.trace(String(line.traceId), (s) => s.length >= 1);
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({ spanId: line.spanId, parentId: undefined, attributes: { 'error.type': 'missing_token' } });
  });

  it('no token, Authorization header or query string in any span', async () => {
    const traces = await jaeger!.traces(service);
    const text = JSON.stringify(traces);
    expect(traces.length).toBeGreaterThanOrEqual(4);
    expect(text).not.toContain(token.split('.')[2]!);
    expect(text).not.toContain(token.split('.')[1]!);
    expect(text.toLowerCase()).not.toContain('bearer');
    expect(text.toLowerCase()).not.toContain('authorization');
    expect(text).not.toContain('not-logged');
  });
});

// An MCP server behind a tool policy and rate limits: each message a span of the MCP semantic
// conventions, its decisions below it, the upstream request below the tool call's span.
const POLICY = `
rules:
  - name: everyone-calls-tools
    effect: allow
    when: mcp.method == "tools/call"
  - name: nobody-fails
    effect: deny
    when: mcp.tool == "fail"
limits:
  tools:
    count: { perMinute: 1 }
`;
const ARGUMENT_VALUE = 'argument-value-7f3a9c';

describe.skipIf(!jaeger)('MCP traces in Jaeger', () => {
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let sidecar: RunningSidecar;
  let log: CapturedLog;
  let token: string;
  const service = `sidecar-mcp-${hex(4)}`;
  const connect = async (headers: Record<string, string>) => {
    const client = new Client({ name: 'coder-like-client', version: '2.4.1' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${token}`, ...headers } },
      }),
    );
    await client.listTools();
    return client;
  };
  /** The spans of a trace under the MCP span named `name`: it, its children, and the request span above it. */
  const mcpSpans = async (traceId: string, name: string, children: number) => {
    const spans = await jaeger!.trace(traceId, (all) => {
      const found = all.find((span) => span.name === name);
      return found !== undefined && all.filter((span) => span.parentId === found.spanId).length >= children;
    });
    const message = spans.find((span) => span.name === name)!;
    return { spans, message, children: spans.filter((span) => span.parentId === message.spanId) };
  };

  beforeAll(async () => {
    await jaeger!.ready();
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer();
    const policyFile = join(mkdtempSync(join(tmpdir(), 'policy-')), 'policy.yaml');
    writeFileSync(policyFile, POLICY);
    log = captureLog();
    sidecar = await startSidecar(testEnv(issuer, mcp, { LOG_LEVEL: 'info', POLICY_FILE: policyFile, ...tracingEnv(jaeger!, service) }), {
      logger: log.logger,
    });
    token = await issuer.mint();
  });
  afterAll(async () => {
    await sidecar.close();
    await mcp.close();
    await issuer.close();
  });

  it('an accepted tool call: MCP attributes, both decisions, the upstream under the call, the audit line’s ids', async () => {
    const client = clientContext();
    const mcpClient = await connect({ traceparent: client.traceparent });
    await mcpClient.callTool({ name: 'whoami', arguments: { note: ARGUMENT_VALUE } });
    const { spans, message, children } = await mcpSpans(client.traceId, 'tools/call whoami', 3);
    const request = spans.find((span) => span.spanId === message.parentId)!;
    expect(request).toMatchObject({ name: 'POST /*', kind: 'server', parentId: client.spanId });
    expect(message).toMatchObject({
      kind: 'server',
      attributes: {
        'mcp.method.name': 'tools/call',
        'gen_ai.tool.name': 'whoami',
        'gen_ai.operation.name': 'execute_tool',
        'jsonrpc.request.id': expect.any(String),
        'mcp.session.id': expect.any(String),
        'mcp.protocol.version': expect.stringMatching(/^\d{4}-\d{2}-\d{2}$/),
        'mcp_auth.argument_names': expect.stringContaining('note'),
        'mcp_auth.outcome': 'result',
      },
    });
    expect(message.attributes).not.toHaveProperty('error.type');
    const byName = Object.fromEntries(children.map((span) => [span.name, span]));
    expect(byName['tool policy']).toMatchObject({
      kind: 'internal',
      attributes: { 'mcp_auth.policy.decision': 'allow', 'mcp_auth.policy.rule': 'everyone-calls-tools', 'mcp_auth.policy.dry_run': false },
    });
    expect(byName['rate limits']).toMatchObject({
      attributes: { 'mcp_auth.rate_limit.store': 'memory', 'mcp_auth.rate_limit.limited': false },
    });
    const upstream = byName.POST!;
    expect(upstream).toMatchObject({ kind: 'client', attributes: { 'http.response.status_code': 200, 'url.full': `${mcp.url}/mcp` } });
    // The MCP server got the sidecar's client span as its parent, in the client's trace.
    expect(mcp.seen.map((seen) => seen.traceparent)).toContain(`00-${client.traceId}-${upstream.spanId}-01`);
    const [audit] = await log.waitForAudit((line) => line.tool === 'whoami' && line.traceId === client.traceId);
    expect(audit).toMatchObject({ spanId: message.spanId, outcome: 'result' });
    // The tool call histogram's exemplar points at the call.
    const scrape = await (await fetch(`${sidecar.adminUrl}/metrics`, { headers: { accept: 'application/openmetrics-text' } })).text();
    expect(scrape).toMatch(
      new RegExp(
        `^mcp_auth_tool_call_duration_seconds_bucket\\{[^}]*tool="whoami"[^}]*\\} \\d+ # \\{trace_id="${client.traceId}",span_id="${message.spanId}"\\}`,
        'm',
      ),
    );
    await mcpClient.close();
  });

  it('a policy denial: the rule and the error on the spans, nothing upstream', async () => {
    const client = clientContext();
    const mcpClient = await connect({ traceparent: client.traceparent });
    await expect(mcpClient.callTool({ name: 'fail' })).rejects.toThrow(/not allowed by the tool policy/);
    const { message, children } = await mcpSpans(client.traceId, 'tools/call fail', 1);
    expect(message).toMatchObject({
      status: 'ERROR',
      attributes: {
        'mcp_auth.outcome': 'denied',
        'error.type': String(RPC_CODES.policyDenied),
        'rpc.response.status_code': String(RPC_CODES.policyDenied),
      },
    });
    expect(children.map((span) => span.name)).toEqual(['tool policy']);
    expect(children[0]).toMatchObject({ attributes: { 'mcp_auth.policy.decision': 'deny', 'mcp_auth.policy.rule': 'nobody-fails' } });
    await mcpClient.close();
  });

  it('a rate-limited call: the limit on its span, nothing upstream', async () => {
    const client = clientContext();
    const mcpClient = await connect({ traceparent: client.traceparent });
    await mcpClient.callTool({ name: 'count', arguments: { n: 1 } });
    await expect(mcpClient.callTool({ name: 'count', arguments: { n: 1 } })).rejects.toThrow(/rate limit/);
    const spans = await jaeger!.trace(
      client.traceId,
      (all) => all.filter((span) => span.attributes['mcp_auth.outcome'] === 'limited').length === 1,
    );
    const limited = spans.find((span) => span.attributes['mcp_auth.outcome'] === 'limited')!;
    expect(limited).toMatchObject({
      name: 'tools/call count',
      status: 'ERROR',
      attributes: { 'error.type': String(RPC_CODES.rateLimited) },
    });
    const children = spans.filter((span) => span.parentId === limited.spanId);
    expect(children.map((span) => span.name).sort()).toEqual(['rate limits', 'tool policy']);
    expect(children.find((span) => span.name === 'rate limits')).toMatchObject({
      attributes: { 'mcp_auth.rate_limit.limited': true, 'mcp_auth.rate_limit.scope': 'tool' },
    });
    await mcpClient.close();
  });

  it('trace context in _meta (no traceparent header): the call joins the client’s trace, the request span linked', async () => {
    const client = clientContext();
    const mcpClient = await connect({});
    await mcpClient.callTool({
      name: 'whoami',
      _meta: { traceparent: client.traceparent, tracestate: 'vendor=abc', baggage: 'tenant=t1' },
    });
    const { message, children } = await mcpSpans(client.traceId, 'tools/call whoami', 3);
    expect(message.parentId).toBe(client.spanId);
    expect(message.links).toHaveLength(1);
    expect(message.links[0]!.traceId).not.toBe(client.traceId);
    const upstream = children.find((span) => span.name === 'POST')!;
    const seen = mcp.seen.find((request) => request.traceparent === `00-${client.traceId}-${upstream.spanId}-01`);
    // The baggage of _meta goes along as a header (the client sent none); the body is unchanged.
    expect(seen?.baggage).toBe('tenant=t1');
    // The request span is where the link points: in a trace of its own.
    const linked = await jaeger!.trace(message.links[0]!.traceId, (all) => all.some((span) => span.spanId === message.links[0]!.spanId));
    expect(linked.find((span) => span.spanId === message.links[0]!.spanId)).toMatchObject({ name: 'POST /*', parentId: undefined });
    await mcpClient.close();
  });

  it('no token or argument value in any span', async () => {
    const text = JSON.stringify(await jaeger!.traces(service));
    expect(text).toContain('whoami');
    expect(text).not.toContain(ARGUMENT_VALUE);
    expect(text).not.toContain(token.split('.')[2]!);
    expect(text.toLowerCase()).not.toContain('bearer');
  });
});

// MCP 2026-07-28 carries the client's trace context in every request's _meta (no session, often
// no traceparent header): the call's span joins the client's trace, and so does the upstream.
describe.skipIf(!jaeger)('MCP 2026-07-28 traces in Jaeger', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let token: string;
  const service = `sidecar-2026-${hex(4)}`;

  beforeAll(async () => {
    await jaeger!.ready();
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    upstream.handle((_req, res, body) => {
      const message = JSON.parse(body) as { id?: number };
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { resultType: 'complete', content: [] } }));
    });
    sidecar = await startSidecar(testEnv(issuer, upstream, { SHUTDOWN_GRACE_SECONDS: '2', ...tracingEnv(jaeger!, service) }));
    token = await issuer.mint();
  });
  afterAll(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  it('a tools/call whose _meta names the client’s span', async () => {
    const client = clientContext();
    const version = '2026-07-28';
    const response = await fetch(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': version,
        'mcp-method': 'tools/call',
        'mcp-name': 'lookup',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 7,
        method: 'tools/call',
        params: {
          name: 'lookup',
          arguments: { key: ARGUMENT_VALUE },
          _meta: {
            'io.modelcontextprotocol/protocolVersion': version,
            'io.modelcontextprotocol/clientCapabilities': {},
            traceparent: client.traceparent,
          },
        },
      }),
    });
    expect(response.status).toBe(200);
    await response.text();
    const spans = await jaeger!.trace(client.traceId, (all) => all.some((span) => span.kind === 'client'));
    const call = spans.find((span) => span.attributes['mcp.method.name'] === 'tools/call')!;
    expect(call).toMatchObject({
      parentId: client.spanId,
      attributes: {
        'gen_ai.tool.name': 'lookup',
        'jsonrpc.request.id': '7',
        'mcp.protocol.version': version,
        'mcp_auth.outcome': 'result',
      },
    });
    expect(call.attributes).not.toHaveProperty('mcp.session.id');
    const upstreamSpan = spans.find((span) => span.kind === 'client')!;
    expect(upstreamSpan.parentId).toBe(call.spanId);
    expect(upstream.seen.at(-1)!.headers.traceparent).toBe(`00-${client.traceId}-${upstreamSpan.spanId}-01`);
    // The body went as it came: its _meta still names the client's span.
    expect(upstream.seen.at(-1)!.body).toContain(client.traceparent);
    expect(JSON.stringify(spans)).not.toContain(ARGUMENT_VALUE);
  });
});

describe.skipIf(!jaeger)('shutdown and traces', () => {
  it('exports the spans still queued when the sidecar stops, within the grace time', async () => {
    await jaeger!.ready();
    const issuer = await startIssuer();
    await issuer.addKey();
    const upstream = await startUpstream();
    // Nothing would be exported for ten minutes but for the shutdown.
    const sidecar = await startSidecar(
      testEnv(issuer, upstream, {
        ...tracingEnv(jaeger!, `sidecar-stop-${hex(4)}`),
        OTEL_BSP_SCHEDULE_DELAY: '600000',
        SHUTDOWN_GRACE_SECONDS: '5',
      }),
    );
    try {
      const client = clientContext();
      const token = await issuer.mint();
      await (await fetch(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${token}`, traceparent: client.traceparent } })).text();
      const started = performance.now();
      await sidecar.close();
      expect(performance.now() - started).toBeLessThan(5000);
      const spans = await jaeger!.trace(client.traceId, (all) => all.length >= 3);
      expect(spans.map((span) => span.name).sort()).toEqual(['GET', 'GET /*', 'verify token']);
    } finally {
      await upstream.close();
      await issuer.close();
    }
  });
});
