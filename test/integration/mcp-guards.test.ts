import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RPC_CODES } from '../../src/lib/errors.js';
import { request } from 'undici';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LATEST_PROTOCOL_VERSION, McpError } from '@modelcontextprotocol/sdk/types.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startMcpServer, type McpTestServer } from '../helpers/mcp-server.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import type { ClientMessage, Decision, Guard } from '../../src/mcp/guard.js';

// The guard pipeline (src/mcp/guard.ts's contract), with two small guards standing for the
// tool policy and the rate limits: every message judged before anything is forwarded,
// refusals answered by the sidecar, batches refused whole, settle once per allowed message,
// list results rewritten (JSON and SSE).
describe.each([
  { mode: 'SSE responses', jsonResponse: false },
  { mode: 'JSON responses', jsonResponse: true },
])('MCP guards ($mode)', ({ jsonResponse }) => {
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let sidecar: RunningSidecar;
  let client: Client;
  let transport: StreamableHTTPClientTransport;
  let log: CapturedLog;
  let token: string;
  const settled: string[] = [];
  const name = (m: ClientMessage) => m.tool ?? m.method;

  const policy: Guard = {
    judge: (m): Decision =>
      m.tool === 'wait'
        ? { effect: 'deny', rule: 'nobody-waits', rpcCode: -32001, message: 'tool wait is not allowed' }
        : { effect: 'allow', rule: 'everyone' },
    settle: (m) => void settled.push(`policy:${name(m)}`),
    rewrites: (method) => method === 'tools/list',
    rewriteResult: (_m, result) => {
      const { tools } = result as { tools: { name: string }[] };
      return { ...(result as object), tools: tools.filter((t) => t.name !== 'fail') };
    },
  };
  const limits: Guard = {
    judge: (m): Decision =>
      m.tool === 'count' || m.method === 'prompts/list'
        ? { effect: 'limit', scope: 'user', retryAfterSeconds: 7, message: 'too many calls' }
        : { effect: 'allow' },
    settle: (m) => void settled.push(`limits:${name(m)}`),
  };

  const raw = (body: unknown) =>
    request(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': transport.sessionId!,
        // Batches exist only before 2025-06-18: those are sent as a 2025-03-26 client would.
        'mcp-protocol-version': Array.isArray(body) ? '2025-03-26' : LATEST_PROTOCOL_VERSION,
      },
      body: JSON.stringify(body),
    });
  const posts = () => mcp.seen.filter((s) => s.method === 'POST').length;

  beforeEach(async () => {
    settled.length = 0;
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer({ jsonResponse });
    token = await issuer.mint();
    log = captureLog();
    sidecar = await startSidecar(testEnv(issuer, mcp, { LOG_LEVEL: 'info' }), { logger: log.logger, guards: [policy, limits] });
    client = new Client({ name: 'guarded-client', version: '1.0.0' });
    transport = new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    await client.connect(transport);
  });
  afterEach(async () => {
    await client.close();
    await sidecar.close();
    await mcp.close();
    await issuer.close();
  });

  it('a denied tool call never reaches the upstream: the client gets the JSON-RPC error, the audit line names the rule', async () => {
    const before = posts();
    const error = await client.callTool({ name: 'wait', arguments: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(McpError);
    expect((error as McpError).code).toBe(-32001);
    expect(posts()).toBe(before);
    const [line] = await log.waitForAudit((l) => l.tool === 'wait');
    expect(line).toMatchObject({ outcome: 'denied', policyRule: 'nobody-waits', rpcErrorCode: -32001 });
    // The limits guard was never asked about a message the policy refused: nothing to settle.
    expect(settled.filter((s) => s.endsWith(':wait'))).toEqual([]);
  });

  it('a rate-limited tool call gets a JSON-RPC error, another request 429; both with Retry-After', async () => {
    const call = await raw({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'count', arguments: { n: 1 } } });
    expect(call.statusCode).toBe(200);
    expect(call.headers['retry-after']).toBe('7');
    expect(await call.body.json()).toMatchObject({
      jsonrpc: '2.0',
      id: 5,
      error: { code: RPC_CODES.rateLimited, message: 'too many calls', data: { retryAfterSeconds: 7 } },
    });
    const list = await raw({ jsonrpc: '2.0', id: 6, method: 'prompts/list' });
    expect(list.statusCode).toBe(429);
    expect(list.headers['retry-after']).toBe('7');
    expect(await list.body.json()).toMatchObject({ error: 'rate_limited' });
    expect(await log.waitForAudit((l) => l.outcome === 'limited', 2)).toHaveLength(2);
    // The policy allowed both: each settled once, though the upstream never saw them.
    expect(settled.filter((s) => s === 'policy:count' || s === 'policy:prompts/list')).toEqual(['policy:count', 'policy:prompts/list']);
  });

  it('a batch with one refused message is refused whole: nothing forwarded, one error per request naming why, allowed ones settled', async () => {
    await log.waitForAudit((l) => l.method === 'notifications/initialized');
    settled.length = 0;
    const before = posts();
    const res = await raw([
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'whoami', arguments: {} } },
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'wait', arguments: {} } },
      { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } },
    ]);
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as { id: number; error: { code: number; message: string } }[];
    expect(body).toHaveLength(2);
    expect(body[0]).toMatchObject({ id: 1, error: { code: -32001, message: 'batch refused: tool wait is not allowed' } });
    expect(body[1]).toMatchObject({ id: 2, error: { code: -32001, message: 'tool wait is not allowed' } });
    expect(posts()).toBe(before);
    expect(settled.sort()).toEqual(['limits:notifications/progress', 'limits:whoami', 'policy:notifications/progress', 'policy:whoami']);
  });

  it('settles every allowed message once, when it has ended', async () => {
    settled.length = 0;
    await client.callTool({ name: 'whoami', arguments: {} });
    await log.waitForAudit((l) => l.tool === 'whoami');
    expect(settled).toEqual(['policy:whoami', 'limits:whoami']);
  });

  it('filters tools/list through the guard that rewrites it, and forwards results it leaves alone unchanged', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['count', 'wait', 'whoami']);
    const res = await raw({ jsonrpc: '2.0', id: 'l', method: 'tools/list' });
    const text = await res.body.text();
    expect(text).not.toContain('"fail"');
    expect(text).toContain('"whoami"');
    if (jsonResponse) expect(res.headers['content-length']).toBe(String(Buffer.byteLength(text)));
    // The label set learns what the upstream listed, the filtered tool included.
    await client.callTool({ name: 'fail', arguments: {} });
    expect(await (await fetch(`${sidecar.adminUrl}/metrics`)).text()).toContain(
      'mcp_auth_tool_calls_total{tool="fail",outcome="tool_error"} 1',
    );
  });
});
