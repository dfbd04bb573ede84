import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { runGoClient, startGoServer, useGo, type GoServer } from '../helpers/go.js';

const go = useGo();

// The audit with the official Go SDK's server, and the Go clients (go-sdk, mcp-go), in front of it.
describe.skipIf(!go)('MCP audit with the Go SDK server and the Go clients', () => {
  let issuer: TestIssuer;
  let server: GoServer;
  let sidecar: RunningSidecar;
  let log: CapturedLog;
  let token: string;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    server = await startGoServer();
    token = await issuer.mint();
    log = captureLog();
    sidecar = await startSidecar(testEnv(issuer, { url: server.origin }, { LOG_LEVEL: 'info' }), { logger: log.logger });
  });
  afterAll(async () => {
    await sidecar.close();
    await server.close();
    await issuer.close();
  });

  it("audits the TypeScript client's calls to the Go server, tool labels from its tools/list", async () => {
    const client = new Client({ name: 'ts-client', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    await client.connect(transport);
    await client.listTools();
    await client.callTool({ name: 'echo', arguments: { text: 'a value never logged' } });
    const [line] = await log.waitForAudit((l) => l.tool === 'echo');
    expect(line).toMatchObject({ outcome: 'result', client: 'ts-client/1.0.0', sessionId: transport.sessionId, argumentNames: ['text'] });
    await client.close();
    expect(log.text()).not.toContain('a value never logged');
    expect(await (await fetch(`${sidecar.adminUrl}/metrics`)).text()).toContain(
      'mcp_auth_tool_calls_total{tool="echo",outcome="result"} 1',
    );
  });

  it.each(['gosdk', 'mcpgo'] as const)('audits the %s client: initialize with its name, tools/call whoami', async (kind) => {
    const before = log.audit().filter((l) => l.tool === 'whoami').length;
    const run = await runGoClient(kind, `${sidecar.url}/mcp`, token);
    expect(run.code, run.stderr).toBe(0);
    const lines = await log.waitForAudit((l) => l.tool === 'whoami', before + 1);
    const line = lines.at(-1)!;
    expect(line).toMatchObject({ outcome: 'result', user: 'alice' });
    expect(line.client).toEqual(expect.any(String));
  });
});
