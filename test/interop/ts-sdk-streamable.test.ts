import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LATEST_PROTOCOL_VERSION, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startMcpServer, type McpTestServer } from '../helpers/mcp-server.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';

describe.each([
  { mode: 'SSE responses', jsonResponse: false },
  { mode: 'JSON responses', jsonResponse: true },
])('MCP Streamable HTTP through the sidecar ($mode)', ({ jsonResponse }) => {
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let sidecar: RunningSidecar;
  let client: Client;
  let transport: StreamableHTTPClientTransport;

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer({ jsonResponse });
    sidecar = await startSidecar(testEnv(issuer, mcp));
    client = new Client({ name: 'coder-like-client', version: '1.0.0' });
    // As Coder's user_oidc mode does: the user's access token as a bearer header on every request.
    transport = new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${await issuer.mint()}` } },
    });
    await client.connect(transport);
  });
  afterEach(async () => {
    await client.close();
    await sidecar.close();
    await mcp.close();
    await issuer.close();
  });

  it('initializes, lists and calls tools, and the tool sees the verified user', async () => {
    expect(transport.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(transport.protocolVersion).toBe(LATEST_PROTOCOL_VERSION);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['count', 'fail', 'wait', 'whoami']);
    const result = await client.callTool({ name: 'whoami', arguments: {} });
    expect(result.content).toEqual([{ type: 'text', text: 'you are alice' }]);
  });

  it('delivers progress notifications before the result (on an SSE response; a JSON response has none)', async () => {
    const progress: number[] = [];
    const result = await client.callTool({ name: 'count', arguments: { n: 5 } }, undefined, {
      onprogress: (p) => progress.push(p.progress),
    });
    expect(progress).toEqual(jsonResponse ? [] : [1, 2, 3, 4, 5]);
    expect(result.content).toEqual([{ type: 'text', text: 'counted to 5' }]);
  });

  it('carries Mcp-Session-Id and MCP-Protocol-Version both ways, and X-Verified-User on every request', async () => {
    await client.callTool({ name: 'whoami', arguments: {} });
    const afterInit = mcp.seen.filter((s) => s.path === '/mcp').slice(1);
    expect(afterInit.length).toBeGreaterThanOrEqual(2);
    for (const request of afterInit) {
      expect(request.sessionId).toBe(transport.sessionId);
      expect(request.protocolVersion).toBe(LATEST_PROTOCOL_VERSION);
    }
    expect(mcp.seen.every((s) => s.user === 'alice')).toBe(true);
  });

  it('the standalone GET stream delivers server-initiated messages, and DELETE ends the session', async () => {
    const changed = new Promise<void>((resolve) => client.setNotificationHandler(ToolListChangedNotificationSchema, () => resolve()));
    // The client opens its GET stream after initialization; announce until it is there.
    const opened = () => mcp.seen.some((s) => s.method === 'GET' && s.path === '/mcp');
    for (let i = 0; !opened(); i++) {
      if (i > 200) throw new Error('the client never opened its GET stream');
      await new Promise((resolve) => setImmediate(resolve));
    }
    mcp.announce();
    await changed;

    const sessionId = transport.sessionId;
    await transport.terminateSession();
    const deleted = mcp.seen.find((s) => s.method === 'DELETE');
    expect(deleted).toMatchObject({ sessionId, user: 'alice' });
    expect(mcp.seen.filter((s) => s.method === 'GET').every((s) => s.user === 'alice')).toBe(true);
  });
});
