import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startMcpServer, type McpTestServer } from '../helpers/mcp-server.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';

// The legacy HTTP+SSE transport answers a POST with 202 and sends the result on its GET stream,
// where the sidecar cannot tell which request (and so which list) it answers. Under a tool
// policy such results are answered as errors instead of passing unfiltered: the legacy transport
// does not work behind a policy (fail closed), Streamable HTTP does.
describe('the tool policy and the legacy HTTP+SSE transport', () => {
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let sidecar: RunningSidecar;
  let authorization: string;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer();
    const dir = mkdtempSync(join(tmpdir(), 'policy-legacy-'));
    const policyFile = join(dir, 'policy.yaml');
    writeFileSync(
      policyFile,
      'rules:\n  - name: whoami-only\n    effect: allow\n    when: mcp.method == "tools/call" && mcp.tool == "whoami"\n',
    );
    sidecar = await startSidecar(testEnv(issuer, mcp, { POLICY_FILE: policyFile }));
    authorization = `Bearer ${await issuer.mint()}`;
  });
  afterAll(async () => {
    await sidecar?.close();
    await mcp?.close();
    await issuer?.close();
  });

  it('Streamable HTTP: the list is filtered', async () => {
    const client = new Client({ name: 'modern', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), { requestInit: { headers: { authorization } } }));
    expect((await client.listTools()).tools.map((t) => t.name)).toEqual(['whoami']);
    await client.close();
  });

  it('legacy HTTP+SSE: results on the GET stream are errors, never the unfiltered list', async () => {
    const client = new Client({ name: 'legacy', version: '1' });
    const transport = new SSEClientTransport(new URL(`${sidecar.url}/sse`), {
      eventSourceInit: {
        fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), authorization } }),
      },
      requestInit: { headers: { authorization } },
    });
    // initialize's result arrives on the GET stream too: the session cannot start.
    await expect(client.connect(transport)).rejects.toThrow(/Streamable HTTP transport/);
    await client.close();
    expect(mcp.seen.some((s) => s.path === '/messages')).toBe(true);
  });
});
