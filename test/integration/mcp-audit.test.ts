import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startMcpServer, type McpTestServer } from '../helpers/mcp-server.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';

// Every MCP request and notification through the sidecar gives one audit line and its
// counters, with the real SDK client and server, responses as SSE and as JSON.
describe.each([
  { mode: 'SSE responses', jsonResponse: false },
  { mode: 'JSON responses', jsonResponse: true },
])('MCP audit ($mode)', ({ jsonResponse }) => {
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let sidecar: RunningSidecar;
  let client: Client;
  let transport: StreamableHTTPClientTransport;
  let log: CapturedLog;
  let token: string;

  const start = async (env: Record<string, string> = {}) => {
    log = captureLog();
    sidecar = await startSidecar(testEnv(issuer, mcp, { LOG_LEVEL: 'info', ...env }), { logger: log.logger });
    client = new Client({ name: 'coder-like-client', version: '2.4.1' }, { capabilities: { sampling: {} } });
    transport = new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    await client.connect(transport);
  };
  const metrics = async () => await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
  const toolLine = (tool: string) => log.waitForAudit((l) => l.method === 'tools/call' && l.tool === tool).then((l) => l[0]!);

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer({ jsonResponse });
    token = await issuer.mint();
  });
  afterEach(async () => {
    await client.close();
    await sidecar.close();
    await mcp.close();
    await issuer.close();
  });

  it('writes initialize, notifications/initialized and tools/call lines with who, which session and client, and the outcome', async () => {
    await start();
    await client.listTools();
    await client.callTool({ name: 'count', arguments: { n: 3 } }, undefined, { onprogress: () => {} });
    const [init] = await log.waitForAudit((l) => l.method === 'initialize');
    expect(init).toMatchObject({
      user: 'alice',
      outcome: 'result',
      sessionId: transport.sessionId,
      client: 'coder-like-client/2.4.1',
      protocolVersion: LATEST_PROTOCOL_VERSION,
      rpcId: 0,
    });
    const [initialized] = await log.waitForAudit((l) => l.method === 'notifications/initialized');
    expect(initialized).toMatchObject({ outcome: 'result', sessionId: transport.sessionId });
    expect(initialized).not.toHaveProperty('rpcId');
    const call = await toolLine('count');
    expect(call).toMatchObject({
      msg: 'mcp',
      user: 'alice',
      subject: expect.any(String),
      sessionId: transport.sessionId,
      client: 'coder-like-client/2.4.1',
      method: 'tools/call',
      tool: 'count',
      argumentNames: ['n'],
      outcome: 'result',
      rpcId: expect.any(Number),
    });
    expect(call.argumentsSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(call).not.toHaveProperty('arguments');
    expect(call.durationMs).toBeGreaterThan(0);
    expect(call.bytesIn).toBeGreaterThan(50);
    expect(call.bytesOut).toBeGreaterThan(50);
    const text = await metrics();
    expect(text).toContain('mcp_auth_tool_calls_total{tool="count",outcome="result"} 1');
    expect(text).toContain('mcp_auth_mcp_messages_total{method="initialize",outcome="result"} 1');
    expect(text).toContain('mcp_auth_mcp_messages_total{method="tools/list",outcome="result"} 1');
    expect(text).toMatch(/mcp_auth_tool_call_duration_seconds_count\{tool="count"\} 1/);
  });

  it('tells a tool error (isError) from a JSON-RPC error and an unknown tool', async () => {
    await start();
    await client.listTools();
    const failed = await client.callTool({ name: 'fail', arguments: {} });
    expect(failed.isError).toBe(true);
    expect(await toolLine('fail')).toMatchObject({ outcome: 'tool_error' });
    // A request the server answers with a JSON-RPC error.
    await expect(client.getPrompt({ name: 'nope' })).rejects.toThrow();
    const [promptLine] = await log.waitForAudit((l) => l.method === 'prompts/get');
    expect(promptLine).toMatchObject({ outcome: 'rpc_error', prompt: 'nope', rpcErrorCode: expect.any(Number) });
    const unknown = await client.callTool({ name: 'no-such-tool', arguments: {} }).catch((error: Error) => error);
    const line = await toolLine('no-such-tool');
    // The SDK answers an unknown tool with isError or with a JSON-RPC error, depending on its version.
    expect(line.outcome).toBe(unknown instanceof Error ? 'rpc_error' : 'tool_error');
    const text = await metrics();
    expect(text).toContain('mcp_auth_tool_calls_total{tool="fail",outcome="tool_error"} 1');
    expect(text).toContain(`mcp_auth_tool_calls_total{tool="other",outcome="${String(line.outcome)}"} 1`);
  });

  it('records a call the client walked away from as cancelled', async () => {
    await start();
    const call = client.callTool({ name: 'wait', arguments: {} }).catch(() => undefined);
    while (mcp.waiting.length === 0) await new Promise((resolve) => setImmediate(resolve));
    await mcp.waiting[0]!.started;
    await client.close();
    await call;
    expect(await toolLine('wait')).toMatchObject({ outcome: 'cancelled' });
  });

  it('audits a batch (raw HTTP: the SDK no longer sends them) one line per message, and an invented tool name adds no label value', async () => {
    await start();
    await client.listTools();
    const res = await request(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': transport.sessionId!,
        // Batches exist only before 2025-06-18: sent as a 2025-03-26 client would.
        'mcp-protocol-version': '2025-03-26',
      },
      body: JSON.stringify([
        { jsonrpc: '2.0', id: 'a', method: 'tools/call', params: { name: 'whoami', arguments: {} } },
        {
          jsonrpc: '2.0',
          id: 'b',
          method: 'tools/call',
          params: { name: 'invented-by-the-client', arguments: { secret: 's3cr3t-value' } },
        },
        { jsonrpc: '2.0', method: 'notifications/roots/list_changed' },
      ]),
    });
    await res.body.text();
    const [a] = await log.waitForAudit((l) => l.rpcId === 'a');
    const [b] = await log.waitForAudit((l) => l.rpcId === 'b');
    expect(a).toMatchObject({ method: 'tools/call', tool: 'whoami', outcome: 'result' });
    expect(b).toMatchObject({ method: 'tools/call', tool: 'invented-by-the-client', argumentNames: ['secret'] });
    await log.waitForAudit((l) => l.method === 'notifications/roots/list_changed');
    const text = await metrics();
    expect(text).not.toContain('invented-by-the-client');
    expect(text).toContain('mcp_auth_tool_calls_total{tool="whoami",outcome="result"} 1');
    expect(log.text()).not.toContain('s3cr3t-value');
  });

  it("recognises a sampling request of the server on the GET stream, and audits the client's answer", async () => {
    await start();
    client.setRequestHandler(CreateMessageRequestSchema, async () => ({
      role: 'assistant',
      content: { type: 'text', text: 'hi' },
      model: 'test-model',
    }));
    const opened = () => mcp.seen.some((s) => s.method === 'GET' && s.path === '/mcp');
    for (let i = 0; !opened(); i++) {
      if (i > 500) throw new Error('the client never opened its GET stream');
      await new Promise((resolve) => setImmediate(resolve));
    }
    const answers = await mcp.sample();
    expect(answers).toMatchObject([{ model: 'test-model' }]);
    const [line] = await log.waitForAudit((l) => l.method === 'sampling/createMessage');
    expect(line).toMatchObject({ outcome: 'result', sessionId: transport.sessionId, user: 'alice' });
  });

  it('shows argument values only with AUDIT_ARGUMENTS=values, cut to AUDIT_ARGUMENT_BYTES; AUDIT=off writes no line but counts', async () => {
    await start({ AUDIT_ARGUMENTS: 'values', AUDIT_ARGUMENT_BYTES: '16' });
    await client.callTool({ name: 'whoami', arguments: { short: 'visible', long: 'x'.repeat(100) } });
    const line = await toolLine('whoami');
    expect(line.arguments).toEqual({ short: 'visible', long: `"${'x'.repeat(15)}…` });
    await client.close();
    await sidecar.close();

    await start({ AUDIT: 'off' });
    await client.callTool({ name: 'whoami', arguments: { a: 'value-never-logged' } });
    expect(log.audit()).toEqual([]);
    expect(log.text()).not.toContain('value-never-logged');
    expect(await metrics()).toContain('mcp_auth_tool_calls_total{tool="other",outcome="result"} 1');
  });
});
