import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { discoverOAuthProtectedResourceMetadata, extractResourceMetadataUrl } from '@modelcontextprotocol/sdk/client/auth.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startMcpServer, type McpTestServer } from '../helpers/mcp-server.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { freePort } from '../helpers/tools.js';

/** Reads server-sent events from a fetch response until `count` events with ids have arrived. */
async function readEvents(body: ReadableStream<Uint8Array>, count: number): Promise<{ id: string; data: string }[]> {
  const events: { id: string; data: string }[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const id = /^id: ?(.*)$/m.exec(block)?.[1];
      const data = /^data: ?(.*)$/m.exec(block)?.[1];
      if (id && data) events.push({ id, data });
      if (events.length === count) return events;
    }
  }
  return events;
}

describe('MCP transports and streams through the sidecar', () => {
  let issuer: TestIssuer;
  let mcp: McpTestServer;
  let sidecar: RunningSidecar;
  let token: string;
  let base: string;

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    mcp = await startMcpServer();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    sidecar = await startSidecar(testEnv(issuer, mcp, { PORT: String(port), RESOURCE_URL: `${base}/mcp`, UPSTREAM_TIMEOUT_SECONDS: '1' }));
    token = await issuer.mint();
  });
  afterEach(async () => {
    await sidecar.close();
    await mcp.close();
    await issuer.close();
  });

  const headers = (extra: Record<string, string> = {}) => ({
    authorization: `Bearer ${token}`,
    accept: 'application/json, text/event-stream',
    'content-type': 'application/json',
    ...extra,
  });
  const rpc = (id: number, method: string, params: unknown = {}) => JSON.stringify({ jsonrpc: '2.0', id, method, params });

  async function rawSession(): Promise<string> {
    const init = await fetch(`${base}/mcp`, {
      method: 'POST',
      headers: headers(),
      body: rpc(1, 'initialize', { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '1' } }),
    });
    const sessionId = init.headers.get('mcp-session-id')!;
    await init.text();
    const initialized = await fetch(`${base}/mcp`, {
      method: 'POST',
      headers: headers({ 'mcp-session-id': sessionId, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION }),
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    expect(initialized.status).toBe(202);
    return sessionId;
  }

  it('resumes a GET stream with Last-Event-ID, replaying what was missed', async () => {
    const sessionId = await rawSession();
    const streamHeaders = headers({
      'mcp-session-id': sessionId,
      'mcp-protocol-version': LATEST_PROTOCOL_VERSION,
      accept: 'text/event-stream',
    });
    const first = new AbortController();
    const stream = await fetch(`${base}/mcp`, { headers: streamHeaders, signal: first.signal });
    expect(stream.headers.get('content-type')).toBe('text/event-stream');
    const firstEvents = readEvents(stream.body!, 1);
    mcp.announce();
    const [seen] = await firstEvents;
    first.abort();
    // While disconnected, the server emits another event into its event store.
    mcp.announce();
    const resumed = await fetch(`${base}/mcp`, { headers: { ...streamHeaders, 'last-event-id': seen!.id } });
    const [replayed] = await readEvents(resumed.body!, 1);
    expect(replayed!.id).not.toBe(seen!.id);
    expect(JSON.parse(replayed!.data)).toMatchObject({ method: 'notifications/tools/list_changed' });
    expect(mcp.seen.find((s) => s.lastEventId === seen!.id)).toMatchObject({ method: 'GET', user: 'alice' });
    await resumed.body!.cancel();
  });

  it('a client that disconnects mid-call closes the upstream request promptly', async () => {
    const sessionId = await rawSession();
    const controller = new AbortController();
    const call = fetch(`${base}/mcp`, {
      method: 'POST',
      headers: headers({ 'mcp-session-id': sessionId, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION }),
      body: rpc(2, 'tools/call', { name: 'wait', arguments: {} }),
      signal: controller.signal,
    }).catch(() => undefined);
    while (mcp.waiting.length === 0) await new Promise((resolve) => setImmediate(resolve));
    await mcp.waiting[0]!.started;
    const upstreamCall = mcp.seen.at(-1)!;
    controller.abort();
    await call;
    // The MCP server sees its HTTP request end (a disconnect is not a cancellation in MCP, so the
    // tool itself may go on): bounded by the test timeout.
    await upstreamCall.closed;
  });

  it('keeps a stream open beyond UPSTREAM_TIMEOUT_SECONDS, and 200 open streams do not block a tools/call', async () => {
    const agent = new Agent({ connections: 256 });
    try {
      const streams = await Promise.all(
        Array.from({ length: 200 }, () => request(`${base}/hold`, { dispatcher: agent, headers: { authorization: `Bearer ${token}` } })),
      );
      for (const s of streams) expect(s.statusCode).toBe(200);
      expect(mcp.seen.filter((s) => s.path === '/hold')).toHaveLength(200);

      const client = new Client({ name: 'c', version: '1' });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
      );
      expect((await client.callTool({ name: 'whoami', arguments: {} })).content).toEqual([{ type: 'text', text: 'you are alice' }]);
      // Past the 1 s header timeout, the streams are still open and still deliver.
      const late = await new Promise<string>((resolve) => setTimeout(() => resolve('late'), 1500));
      expect(late).toBe('late');
      const inFlight = (await (await request(`${sidecar.adminUrl}/metrics`)).body.text()).match(/^mcp_auth_requests_in_flight (\d+)$/m)![1];
      expect(Number(inFlight)).toBeGreaterThanOrEqual(200);
      await client.close();
      for (const s of streams) s.body.destroy();
    } finally {
      await agent.close().catch(() => undefined);
    }
  }, 30_000);

  it('works with the legacy HTTP+SSE transport', async () => {
    const authorization = `Bearer ${token}`;
    const client = new Client({ name: 'legacy', version: '1' });
    await client.connect(
      new SSEClientTransport(new URL(`${base}/sse`), {
        eventSourceInit: {
          fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), authorization } }),
        },
        requestInit: { headers: { authorization } },
      }),
    );
    expect((await client.callTool({ name: 'whoami', arguments: {} })).content).toEqual([{ type: 'text', text: 'you are alice' }]);
    await client.close();
    expect(mcp.seen.filter((s) => s.path === '/sse' || s.path === '/messages').every((s) => s.user === 'alice')).toBe(true);
    expect(mcp.seen.some((s) => s.path === '/messages')).toBe(true);
  });

  it("is discoverable per the MCP authorization spec with the SDK's own helpers", async () => {
    const unauthenticated = await fetch(`${base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(unauthenticated.status).toBe(401);
    const metadataUrl = extractResourceMetadataUrl(unauthenticated);
    expect(metadataUrl?.href).toBe(`${base}/.well-known/oauth-protected-resource/mcp`);
    const metadata = await discoverOAuthProtectedResourceMetadata(new URL(`${base}/mcp`), { resourceMetadataUrl: metadataUrl });
    expect(metadata.resource).toBe(`${base}/mcp`);
    expect(metadata.authorization_servers).toEqual([issuer.issuer]);
    // Without the hint, the SDK finds it at the path-aware well-known URL too.
    expect((await discoverOAuthProtectedResourceMetadata(new URL(`${base}/mcp`))).authorization_servers).toEqual([issuer.issuer]);
  });

  it('a client without a token (a Coder user who logged in without OIDC) gets an authentication error, not a hang', async () => {
    const client = new Client({ name: 'no-token', version: '1' });
    await expect(client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`)))).rejects.toThrow(/401|nauthorized/);
    expect(mcp.seen).toHaveLength(0);
  });
});
