import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema,
  CreateMessageRequestSchema,
  CreateMessageResultSchema,
  GetPromptRequestSchema,
  LATEST_PROTOCOL_VERSION,
  ListPromptsRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListResourcesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { POLICY_DENIED_CODE } from '../../src/mcp/policy/guard.js';

// The tool policy end to end: the real TypeScript SDK client → the sidecar with
// examples/policy/datastore.yaml (plus rules for prompts, resources and one tool everyone may
// call) → a datastore-shaped SDK server that pages its lists. One test per hole peers' users found.

const EXAMPLE = readFileSync(new URL('../../examples/policy/datastore.yaml', import.meta.url), 'utf8');
const POLICY = `${EXAMPLE}
  - name: alpha-reads-alpha-prompts-and-resources
    effect: allow
    when: '"/alpha" in groups && (mcp.prompt.startsWith("alpha_") || mcp.resource.startsWith("db://alpha/"))'
  - name: everyone-asks
    effect: allow
    when: mcp.method == "tools/call" && mcp.tool == "ask"
`;

const TOOL_PAGES = [
  [
    { name: 'query', inputSchema: { type: 'object' as const }, annotations: { readOnlyHint: true } },
    { name: 'list_tables', inputSchema: { type: 'object' as const }, annotations: { readOnlyHint: true } },
    { name: 'Query', inputSchema: { type: 'object' as const } },
  ],
  [
    { name: 'drop_table', inputSchema: { type: 'object' as const }, annotations: { destructiveHint: true } },
    { name: 'ask', inputSchema: { type: 'object' as const } },
  ],
];

interface Datastore {
  url: string;
  calls: string[];
  close(): Promise<void>;
}

async function startDatastore(jsonResponse: boolean): Promise<Datastore> {
  const calls: string[] = [];
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const build = () => {
    const server = new Server({ name: 'datastore', version: '1.0.0' }, { capabilities: { tools: {}, prompts: {}, resources: {} } });
    server.setRequestHandler(ListToolsRequestSchema, (req) => {
      const page = Number(req.params?.cursor ?? 0);
      return { tools: TOOL_PAGES[page]!, ...(page + 1 < TOOL_PAGES.length ? { nextCursor: String(page + 1) } : {}) };
    });
    server.setRequestHandler(CallToolRequestSchema, async (req) => {
      calls.push(`${req.params.name} ${JSON.stringify(req.params.arguments ?? {})}`);
      if (req.params.name === 'ask') {
        const answer = await server.request(
          { method: 'sampling/createMessage', params: { messages: [], maxTokens: 10 } },
          CreateMessageResultSchema,
        );
        return { content: [{ type: 'text', text: `sampled: ${(answer.content as { text: string }).text}` }] };
      }
      return { content: [{ type: 'text', text: `ran ${req.params.name}` }] };
    });
    server.setRequestHandler(ListPromptsRequestSchema, () => ({ prompts: [{ name: 'alpha_summary' }, { name: 'bravo_summary' }] }));
    server.setRequestHandler(GetPromptRequestSchema, (req) => {
      calls.push(`prompt ${req.params.name}`);
      return { messages: [] };
    });
    server.setRequestHandler(ListResourcesRequestSchema, () => ({
      resources: [
        { uri: 'db://alpha/orders', name: 'a' },
        { uri: 'db://bravo/orders', name: 'b' },
      ],
    }));
    server.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({
      resourceTemplates: [
        { uriTemplate: 'db://alpha/{table}', name: 'a' },
        { uriTemplate: 'db://bravo/{table}', name: 'b' },
      ],
    }));
    server.setRequestHandler(ReadResourceRequestSchema, (req) => {
      calls.push(`read ${req.params.uri}`);
      return { contents: [{ uri: req.params.uri, text: 'rows' }] };
    });
    return server;
  };
  const http: HttpServer = createServer(async (req, res) => {
    const id = req.headers['mcp-session-id'];
    let transport = typeof id === 'string' ? sessions.get(id) : undefined;
    if (transport === undefined) {
      if (typeof id === 'string') {
        res.writeHead(404).end();
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: randomUUID,
        enableJsonResponse: jsonResponse,
        onsessioninitialized: (sid) => void sessions.set(sid, transport!),
      });
      await build().connect(transport);
    }
    await transport.handleRequest(req, res);
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    calls,
    close: async () => {
      for (const t of sessions.values()) await t.close();
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    },
  };
}

describe.each([
  { mode: 'SSE answers', jsonResponse: false },
  { mode: 'JSON answers', jsonResponse: true },
])('tool policy end to end ($mode)', ({ jsonResponse }) => {
  let issuer: TestIssuer;
  let datastore: Datastore;
  let sidecar: RunningSidecar;
  let log: CapturedLog;
  const clients: Client[] = [];
  const tokens: Record<string, string> = {};

  async function connect(who: 'alice' | 'bob'): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
    const client = new Client({ name: 'policy-test', version: '1.0.0' }, { capabilities: { sampling: {} } });
    client.setRequestHandler(CreateMessageRequestSchema, () => ({
      role: 'assistant',
      model: 'm',
      content: { type: 'text', text: 'hello' },
    }));
    const transport = new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${tokens[who]}` } },
    });
    await client.connect(transport);
    clients.push(client);
    return { client, transport };
  }

  const post = (who: string, body: string, headers: Record<string, string> = {}) =>
    request(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${tokens[who]}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': LATEST_PROTOCOL_VERSION,
        ...headers,
      },
      body,
    });
  const callBody = (name: unknown, args: object = {}, id: string | number = 7) =>
    JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });

  async function listAll(client: Client): Promise<string[][]> {
    const pages: string[][] = [];
    let cursor: string | undefined;
    do {
      const page = await client.listTools(cursor === undefined ? {} : { cursor });
      pages.push(page.tools.map((t) => t.name));
      cursor = page.nextCursor;
    } while (cursor !== undefined);
    return pages;
  }

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    tokens.alice = await issuer.mint({ preferred_username: 'alice', sub: 'u-alice', groups: ['/alpha'] });
    tokens.bob = await issuer.mint({ preferred_username: 'bob', sub: 'u-bob', groups: ['/bravo'] });
    datastore = await startDatastore(jsonResponse);
    const dir = mkdtempSync(join(tmpdir(), 'policy-e2e-'));
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    log = captureLog();
    sidecar = await startSidecar(
      testEnv(issuer, datastore, { POLICY_FILE: join(dir, 'policy.yaml'), MCP_MAX_BODY_BYTES: '4096', LOG_LEVEL: 'info' }),
      { logger: log.logger },
    );
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close();
    await sidecar.close();
    await datastore.close();
    await issuer.close();
  });

  it('lists only the tools a user could call, on every page: /alpha sees query, /bravo the read-only tools (by the listed annotations)', async () => {
    const { client: alice } = await connect('alice');
    expect(await listAll(alice)).toEqual([['query'], ['ask']]);
    const { client: bob } = await connect('bob');
    expect(await listAll(bob)).toEqual([['query', 'list_tables'], ['ask']]);
  });

  it('a denied call never reaches the upstream; the client gets -32003 with the request id, and the session stays usable', async () => {
    const { client } = await connect('alice');
    expect(await client.callTool({ name: 'query', arguments: { table: 'alpha_orders' } })).toMatchObject({
      content: [{ text: 'ran query' }],
    });
    const error = await client.callTool({ name: 'query', arguments: { table: 'bravo_orders' } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(McpError);
    expect((error as McpError).code).toBe(POLICY_DENIED_CODE);
    expect((error as McpError).message).toContain('not allowed by the tool policy');
    expect(await client.callTool({ name: 'query', arguments: { table: 'alpha_x' } })).toMatchObject({ content: [{ text: 'ran query' }] });
    expect(datastore.calls).toEqual(['query {"table":"alpha_orders"}', 'query {"table":"alpha_x"}']);

    const raw = await post('alice', callBody('drop_table', {}, 'req-9'), {
      'mcp-session-id': (clients[0]!.transport as StreamableHTTPClientTransport).sessionId!,
    });
    expect(raw.statusCode).toBe(200);
    expect(await raw.body.json()).toMatchObject({ jsonrpc: '2.0', id: 'req-9', error: { code: POLICY_DENIED_CODE } });
    // The audit line names the rule that decided, for allowed and denied calls alike.
    const [denied] = await log.waitForAudit((l) => l.rpcId === 'req-9');
    expect(denied).toMatchObject({
      user: 'alice',
      tool: 'drop_table',
      outcome: 'denied',
      policyRule: 'nobody-drops-tables',
      rpcErrorCode: POLICY_DENIED_CODE,
    });
    expect(log.audit().find((l) => l.tool === 'query' && l.outcome === 'result')).toMatchObject({
      policyRule: 'alpha-queries-alpha-tables',
    });
  });

  it('annotation rules judge calls by the annotations tools/list declared: /bravo calls query, never drop_table; unlisted means unknown means denied', async () => {
    const { client } = await connect('bob');
    const before = await client.callTool({ name: 'list_tables', arguments: {} }).catch((e: unknown) => e);
    expect((before as McpError).code).toBe(POLICY_DENIED_CODE); // not listed yet: no annotations known
    await listAll(client);
    expect(await client.callTool({ name: 'list_tables', arguments: {} })).toMatchObject({ content: [{ text: 'ran list_tables' }] });
    expect(((await client.callTool({ name: 'drop_table', arguments: {} }).catch((e: unknown) => e)) as McpError).code).toBe(
      POLICY_DENIED_CODE,
    );
    expect(datastore.calls).toEqual(['list_tables {}']);
  });

  it('compares names exactly: Query is not query', async () => {
    const { client } = await connect('alice');
    const error = await client.callTool({ name: 'Query', arguments: { table: 'alpha_orders' } }).catch((e: unknown) => e);
    expect((error as McpError).code).toBe(POLICY_DENIED_CODE);
    expect(datastore.calls).toEqual([]);
  });

  it('filters prompts/list, resources/list and resources/templates/list, and judges prompts/get and resources/read', async () => {
    const { client } = await connect('alice');
    expect((await client.listPrompts()).prompts.map((p) => p.name)).toEqual(['alpha_summary']);
    expect((await client.listResources()).resources.map((r) => r.uri)).toEqual(['db://alpha/orders']);
    expect((await client.listResourceTemplates()).resourceTemplates.map((r) => r.uriTemplate)).toEqual(['db://alpha/{table}']);
    await client.getPrompt({ name: 'alpha_summary' });
    expect(((await client.getPrompt({ name: 'bravo_summary' }).catch((e: unknown) => e)) as McpError).code).toBe(POLICY_DENIED_CODE);
    await client.readResource({ uri: 'db://alpha/orders' });
    expect(((await client.readResource({ uri: 'db://bravo/orders' }).catch((e: unknown) => e)) as McpError).code).toBe(POLICY_DENIED_CODE);
    expect(datastore.calls).toEqual(['prompt alpha_summary', 'read db://alpha/orders']);
  });

  it('judges every element of a batch: one denied element refuses the batch, nothing is forwarded', async () => {
    const { transport } = await connect('alice');
    const batch = `[${callBody('query', { table: 'alpha_orders' }, 1)},${callBody('drop_table', {}, 2)}]`;
    // Batches exist only before 2025-06-18: sent as a 2025-03-26 client would.
    const response = await post('alice', batch, { 'mcp-session-id': transport.sessionId!, 'mcp-protocol-version': '2025-03-26' });
    const answers = (await response.body.json()) as { id: number; error?: { code: number } }[];
    expect(answers.map((a) => a.id).sort()).toEqual([1, 2]);
    expect(answers.every((a) => a.error !== undefined)).toBe(true);
    expect(datastore.calls).toEqual([]);
  });

  it('judges a body whose Content-Type is Application/JSON; charset=utf-8, and refuses one it cannot parse (400) or that is too big (413)', async () => {
    const { transport } = await connect('alice');
    const session = { 'mcp-session-id': transport.sessionId! };
    const odd = await post('alice', callBody('drop_table'), { ...session, 'content-type': 'Application/JSON; charset=utf-8' });
    expect(await odd.body.json()).toMatchObject({ error: { code: POLICY_DENIED_CODE } });
    const broken = await post('alice', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop_table"', session);
    expect(broken.statusCode).toBe(400);
    await broken.body.dump();
    const big = await post('alice', callBody('query', { table: 'alpha_x', pad: 'x'.repeat(5000) }), session);
    expect(big.statusCode).toBe(413);
    await big.body.dump();
    const plain = await post('alice', callBody('drop_table'), { ...session, 'content-type': 'text/plain' });
    expect(plain.statusCode).toBe(400);
    await plain.body.dump();
    expect(datastore.calls).toEqual([]);
  });

  it('refuses duplicate member names ("name":"query","name":"drop_table") and a params.name that is not a string', async () => {
    const { transport } = await connect('alice');
    const session = { 'mcp-session-id': transport.sessionId! };
    const twice = await post(
      'alice',
      '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"query","name":"drop_table","arguments":{"table":"alpha_x"}}}',
      session,
    );
    expect(twice.statusCode).toBe(400);
    await twice.body.dump();
    const notString = await post('alice', callBody(['query'], { table: 'alpha_x' }), session);
    expect(await notString.body.json()).toMatchObject({ id: 7, error: { code: POLICY_DENIED_CODE } });
    expect(datastore.calls).toEqual([]);
  });

  it('judges a tool call on a session id the client opened a GET stream with, and on one never seen', async () => {
    const { transport } = await connect('alice');
    const stream = await request(`${sidecar.url}/mcp`, {
      method: 'GET',
      headers: {
        authorization: `Bearer ${tokens.alice}`,
        accept: 'text/event-stream',
        'mcp-session-id': transport.sessionId!,
        'mcp-protocol-version': LATEST_PROTOCOL_VERSION,
      },
    });
    // 409: the SDK client has its own GET stream open on the session already; either way one is open.
    expect([200, 409]).toContain(stream.statusCode);
    const onGet = await post('alice', callBody('drop_table'), { 'mcp-session-id': transport.sessionId! });
    expect(await onGet.body.json()).toMatchObject({ error: { code: POLICY_DENIED_CODE } });
    const unknown = await post('alice', callBody('drop_table'), { 'mcp-session-id': randomUUID() });
    expect(await unknown.body.json()).toMatchObject({ error: { code: POLICY_DENIED_CODE } });
    stream.body.on('error', () => undefined).destroy();
    expect(datastore.calls).toEqual([]);
  });

  it("lets the client's answers to the server's sampling requests pass", async () => {
    const { client } = await connect('bob');
    expect(await client.callTool({ name: 'ask', arguments: {} })).toMatchObject({ content: [{ text: 'sampled: hello' }] });
  });
});

describe('a policy file with limits:', () => {
  it('hands the limits to the rate limits: the second query in a minute is limited, a denied call costs no limit', async () => {
    const issuer = await startIssuer();
    await issuer.addKey();
    const datastore = await startDatastore(true);
    const dir = mkdtempSync(join(tmpdir(), 'policy-limits-'));
    writeFileSync(join(dir, 'policy.yaml'), `${POLICY}limits:\n  tools:\n    query: { perMinute: 1 }\n`);
    const sidecar = await startSidecar(testEnv(issuer, datastore, { POLICY_FILE: join(dir, 'policy.yaml') }));
    const client = new Client({ name: 'policy-test', version: '1.0.0' });
    const token = await issuer.mint({ preferred_username: 'alice', groups: ['/alpha'] });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
    );
    try {
      const denied = await client.callTool({ name: 'query', arguments: { table: 'bravo_x' } }).catch((e: unknown) => e);
      expect((denied as McpError).code).toBe(POLICY_DENIED_CODE);
      expect(await client.callTool({ name: 'query', arguments: { table: 'alpha_x' } })).toMatchObject({ content: [{ text: 'ran query' }] });
      const limited = await client.callTool({ name: 'query', arguments: { table: 'alpha_x' } }).catch((e: unknown) => e);
      expect(limited).toBeInstanceOf(McpError);
      expect((limited as McpError).code).not.toBe(POLICY_DENIED_CODE);
      expect(datastore.calls).toEqual(['query {"table":"alpha_x"}']);
    } finally {
      await client.close();
      await sidecar.close();
      await datastore.close();
      await issuer.close();
    }
  });
});

describe('tool policy in audit mode', () => {
  it('decides and counts would_deny, blocks nothing, filters nothing', async () => {
    const issuer = await startIssuer();
    await issuer.addKey();
    const datastore = await startDatastore(true);
    const dir = mkdtempSync(join(tmpdir(), 'policy-audit-'));
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    const sidecar = await startSidecar(testEnv(issuer, datastore, { POLICY_FILE: join(dir, 'policy.yaml'), POLICY_MODE: 'audit' }));
    const client = new Client({ name: 'policy-test', version: '1.0.0' });
    const token = await issuer.mint({ preferred_username: 'alice', groups: ['/alpha'] });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
    );
    try {
      expect((await client.listTools()).tools.map((t) => t.name)).toEqual(['query', 'list_tables', 'Query']);
      expect(await client.callTool({ name: 'drop_table', arguments: {} })).toMatchObject({ content: [{ text: 'ran drop_table' }] });
      const metrics = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
      expect(metrics).toMatch(/mcp_auth_policy_decisions_total\{decision="would_deny",method="tools\/call"\} 1/);
    } finally {
      await client.close();
      await sidecar.close();
      await datastore.close();
      await issuer.close();
    }
  });
});
