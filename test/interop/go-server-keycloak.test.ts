// The sidecar in front of a Go MCP server built on the official Go SDK (test/go/cmd/server), with
// Go clients as Coder connects (mcp-go) and may connect (go-sdk), and real Keycloak tokens.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { runGoClient, startGoServer, useGo, type GoServer } from '../helpers/go.js';
import { importRealm, useKeycloak, type Realm } from '../helpers/keycloak.js';
import { startSidecar, type RunningSidecar } from '../helpers/sidecar.js';

const go = useGo();
// go-sdk: "...: Unauthorized" (401); mcp-go: "transport error: authorization required".
const AUTHENTICATION = /unauthori[sz]ed|authori[sz]ation required/i;
const keycloak = useKeycloak();

const initialize = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
});

/** A POST with a Host header of our choosing (fetch cannot set Host). */
function post(
  url: string,
  host: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        headers: { host, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => {
          text += chunk.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe.skipIf(!go)('the Go SDK MCP server directly', () => {
  let server: GoServer;
  beforeAll(async () => {
    server = await startGoServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it('refuses a non-loopback Host on its loopback listener (403), and answers a loopback one', async () => {
    const refused = await post(server.url, 'mcp.example.com', initialize);
    expect(refused.status).toBe(403);
    expect(refused.body).toContain('invalid Host header');
    const answered = await post(server.url, new URL(server.url).host, initialize);
    expect(answered.status).toBe(200);
    expect(answered.headers['mcp-session-id']).toBeTruthy();
  });
});

describe.skipIf(!go || !keycloak)('the sidecar in front of the Go SDK server, with Keycloak tokens', () => {
  let server: GoServer;
  let realm: Realm;
  let sidecar: RunningSidecar;
  let token: string;

  beforeAll(async () => {
    server = await startGoServer();
    realm = await importRealm('coder-go');
    sidecar = await startSidecar({
      OIDC_ISSUER: realm.issuer,
      OIDC_ALLOWED_AZP: 'coder',
      UPSTREAM_URL: server.origin,
      PORT: '0',
      HOST: '127.0.0.1',
      ADMIN_PORT: '0',
      ADMIN_HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      OIDC_CLOCK_TOLERANCE_SECONDS: '0',
    });
    token = (await realm.tokens('alice')).access_token;
  }, 300_000);

  // The realm is left to go with Keycloak's in-memory database at the end of the run: deleting
  // one with 200 groups took over 20 s on a loaded machine.
  afterAll(async () => {
    await sidecar?.close();
    await server?.close();
  }, 60_000);

  it('passes a client addressing it by a public name: the Go server sees a loopback Host', async () => {
    const answered = await post(`${sidecar.url}/mcp`, 'mcp.example.com', initialize, { authorization: `Bearer ${token}` });
    expect(answered.status).toBe(200);
    expect(answered.headers['mcp-session-id']).toBeTruthy();
  });

  it('with the TypeScript SDK client: session, whoami, progress over SSE before the result, DELETE', async () => {
    const client = new Client({ name: 'ts-client', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    await client.connect(transport);
    const sessionId = transport.sessionId;
    expect(sessionId).toBeTruthy();
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['drop_table', 'echo', 'progress', 'query', 'sleep', 'whoami']);
    expect(tools.find((t) => t.name === 'query')?.annotations?.readOnlyHint).toBe(true);

    const whoami = await client.callTool({ name: 'whoami', arguments: {} });
    expect(whoami.structuredContent).toMatchObject({ user: 'alice', email: 'alice@example.com', groups: '/alpha', authorization: false });

    const events: string[] = [];
    const progress = await client.callTool({ name: 'progress', arguments: { steps: 3 } }, CallToolResultSchema, {
      onprogress: (p) => events.push(`progress ${p.progress}/${p.total}`),
    });
    events.push('result');
    expect((progress.content as { text: string }[])[0]!.text).toBe('done after 3 steps');
    expect(events).toEqual(['progress 1/3', 'progress 2/3', 'progress 3/3', 'result']);

    // The same call by hand: answered as an event stream, progress events first.
    const raw = await post(
      `${sidecar.url}/mcp`,
      new URL(sidecar.url).host,
      JSON.stringify({
        jsonrpc: '2.0',
        id: 99,
        method: 'tools/call',
        params: { name: 'progress', arguments: { steps: 2 }, _meta: { progressToken: 'p' } },
      }),
      { authorization: `Bearer ${token}`, 'mcp-session-id': sessionId!, 'mcp-protocol-version': '2025-11-25' },
    );
    expect(raw.status).toBe(200);
    expect(raw.headers['content-type']).toContain('text/event-stream');
    const data = raw.body
      .split('\n')
      .filter((l) => l.startsWith('data: '))
      .map((l) => JSON.parse(l.slice(6)) as { method?: string; id?: number });
    expect(data.map((m) => m.method ?? `result ${m.id}`)).toEqual(['notifications/progress', 'notifications/progress', 'result 99']);

    await transport.terminateSession();
    const after = await post(
      `${sidecar.url}/mcp`,
      new URL(sidecar.url).host,
      JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' }),
      { authorization: `Bearer ${token}`, 'mcp-session-id': sessionId!, 'mcp-protocol-version': '2025-11-25' },
    );
    expect(after.status).toBe(404);
    await client.close();
  });

  it.each(['mcpgo', 'gosdk'] as const)('the %s client initializes, lists tools and calls whoami as alice', async (kind) => {
    const run = await runGoClient(kind, `${sidecar.url}/mcp`, token);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.result!.tools).toContain('whoami');
    expect(run.result!.whoami).toMatchObject({ user: 'alice', subject: expect.any(String), groups: '/alpha', authorization: false });
  });

  it.each(['mcpgo', 'gosdk'] as const)('the %s client without a token fails fast with an error naming authentication', async (kind) => {
    const run = await runGoClient(kind, `${sidecar.url}/mcp`);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(AUTHENTICATION);
    expect(run.ms).toBeLessThan(10_000);
  });

  it('both clients with an expired Keycloak token fail fast with an error naming authentication', async () => {
    await realm.update({ accessTokenLifespan: 1 });
    let expired: string;
    try {
      expired = (await realm.tokens('bob')).access_token;
    } finally {
      await realm.update({ accessTokenLifespan: 300 });
    }
    const { exp } = JSON.parse(Buffer.from(expired.split('.')[1]!, 'base64url').toString()) as { exp: number };
    // Waiting for the clock is the point: the token's own exp, plus a second for its rounding.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, exp * 1000 + 1000 - Date.now())));
    for (const kind of ['mcpgo', 'gosdk'] as const) {
      const run = await runGoClient(kind, `${sidecar.url}/mcp`, expired);
      expect(run.code, kind).toBe(1);
      expect(run.stderr, kind).toMatch(AUTHENTICATION);
      expect(run.ms, kind).toBeLessThan(10_000);
    }
  });
});
