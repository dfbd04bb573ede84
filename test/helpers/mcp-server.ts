// A real MCP server (official SDK) standing in for datastore-mcp: no authentication of its
// own, it trusts X-Verified-User. Streamable HTTP at /mcp (stateful with resumable streams, or
// stateless), the legacy HTTP+SSE transport at /sse + /messages, and /hold for plain SSE streams.
// Free of test-framework imports: `npm run demo` uses it too.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import type { EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { arrivals } from './arrivals.js';

export interface SeenMcpRequest {
  method: string;
  path: string;
  user: string | undefined;
  sessionId: string | undefined;
  protocolVersion: string | undefined;
  lastEventId: string | undefined;
  /** The W3C trace context the request carried (the sidecar's span, with tracing on), and its baggage. */
  traceparent: string | undefined;
  baggage: string | undefined;
  /** Resolves when this HTTP request's response closes (finished or cut). */
  closed: Promise<void>;
}

/** What a test server's handler received for a call it ran (this one's, or a Go server's as it printed it). */
export interface RanCallFields {
  method: string;
  tool?: string;
  prompt?: string;
  uri?: string;
  /** The resource a file server would open for `uri` (dot segments resolved). */
  resolved?: string;
  arguments?: Record<string, unknown>;
}

/** A call the server ran, with what its handler received. */
export interface RanCall extends RanCallFields {
  server: 'ts-sdk';
}

export interface McpTestServer {
  readonly url: string;
  readonly seen: SeenMcpRequest[];
  /** With `calls`: every query, drop_table, echo, resource read and prompt it ran. */
  readonly ran: RanCall[];
  /** Resolves once `count` calls matching `where` have run (bounded by the test's timeout). */
  waitForRan(where: (call: RanCall) => boolean, count?: number): Promise<RanCall[]>;
  /** Resolves when a `wait` tool call starts; its request closing resolves `closed`. */
  readonly waiting: { started: Promise<void>; closed: Promise<void> }[];
  /** Ends every pending `wait` tool call. */
  release(): void;
  /** Sends a tools/list_changed notification on every session's standalone stream. */
  announce(): void;
  /** Asks every session's client for a sampling completion (on its standalone stream); resolves with their answers. */
  sample(): Promise<unknown[]>;
  close(): Promise<void>;
}

/** Keeps every event so a client can resume with Last-Event-ID. (The SDK's example store derives
 * the stream from the event id's first `_`-separated part, which breaks for the standalone
 * GET stream, whose id starts with `_`.) */
class MemoryEventStore implements EventStore {
  private readonly events: { id: string; streamId: string; message: JSONRPCMessage }[] = [];

  async storeEvent(streamId: string, message: JSONRPCMessage): Promise<string> {
    const id = `${this.events.length + 1}`;
    this.events.push({ id, streamId, message });
    return id;
  }

  async replayEventsAfter(
    lastEventId: string,
    { send }: { send: (id: string, message: JSONRPCMessage) => Promise<void> },
  ): Promise<string> {
    const index = this.events.findIndex((e) => e.id === lastEventId);
    if (index === -1) return '';
    const { streamId } = this.events[index]!;
    for (const event of this.events.slice(index + 1)) if (event.streamId === streamId) await send(event.id, event.message);
    return streamId;
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * `calls`: also the tools, resource template and prompt the one-reading tests call (query,
 * drop_table, echo; file:///public/{+path}; greet), each recording what it ran in `ran`.
 */
export async function startMcpServer(
  options: { port?: number; stateless?: boolean; jsonResponse?: boolean; calls?: boolean } = {},
): Promise<McpTestServer> {
  const seen: SeenMcpRequest[] = [];
  const ran: RanCall[] = [];
  const calls = arrivals(() => ran);
  const record = (call: Omit<RanCall, 'server'>) => {
    ran.push({ server: 'ts-sdk', ...call });
    calls.wake();
  };
  const waiting: McpTestServer['waiting'] = [];
  const releases: (() => void)[] = [];
  const servers = new Set<McpServer>();
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const legacy = new Map<string, SSEServerTransport>();
  const held = new Set<ServerResponse>();

  function buildMcpServer(): McpServer {
    const server = new McpServer({ name: 'sample-datastore-mcp', version: '1.0.0' }, { capabilities: { tools: { listChanged: true } } });
    server.registerTool('whoami', { description: 'Returns the user the auth sidecar verified (X-Verified-User).' }, async (extra) => {
      const user = extra.requestInfo?.headers['x-verified-user'];
      return { content: [{ type: 'text', text: `you are ${typeof user === 'string' ? user : 'nobody (no X-Verified-User)'}` }] };
    });
    server.registerTool(
      'count',
      { description: 'Counts to n, reporting progress on the way.', inputSchema: { n: z.number().int().min(1).max(100) } },
      async ({ n }, extra) => {
        const progressToken = extra._meta?.progressToken;
        for (let i = 1; i <= n; i++) {
          if (progressToken !== undefined) {
            await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress: i, total: n } });
          }
        }
        return { content: [{ type: 'text', text: `counted to ${n}` }] };
      },
    );
    server.registerTool('wait', { description: 'Answers only when released.' }, async (extra) => {
      let markStarted!: () => void;
      let markClosed!: () => void;
      const started = new Promise<void>((resolve) => (markStarted = resolve));
      const closed = new Promise<void>((resolve) => (markClosed = resolve));
      waiting.push({ started, closed });
      extra.signal.addEventListener('abort', () => markClosed());
      markStarted();
      await new Promise<void>((resolve) => releases.push(resolve));
      return { content: [{ type: 'text', text: 'released' }] };
    });
    server.registerTool('fail', { description: 'Always fails as a tool (isError: true).' }, async () => ({
      isError: true,
      content: [{ type: 'text', text: 'the tool failed' }],
    }));
    if (options.calls) addCalls(server, record);
    servers.add(server);
    return server;
  }

  async function handleStreamable(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (options.stateless) {
      const server = buildMcpServer();
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: options.jsonResponse ?? false,
      });
      res.on('close', () => {
        void transport.close();
        void server.close();
        servers.delete(server);
      });
      await server.connect(transport);
      return transport.handleRequest(req, res);
    }
    const sessionId = header(req, 'mcp-session-id');
    let transport = sessionId === undefined ? undefined : sessions.get(sessionId);
    if (transport === undefined && sessionId === undefined && req.method === 'POST') {
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: randomUUID,
        enableJsonResponse: options.jsonResponse ?? false,
        eventStore: new MemoryEventStore(),
        onsessioninitialized: (id) => void sessions.set(id, transport!),
      });
      transport.onclose = () => {
        if (transport!.sessionId) sessions.delete(transport!.sessionId);
      };
      await buildMcpServer().connect(transport);
    }
    if (transport === undefined) {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end('{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}');
      return;
    }
    return transport.handleRequest(req, res);
  }

  async function handleLegacy(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (req.method === 'GET' && url.pathname === '/sse') {
      const transport = new SSEServerTransport('/messages', res);
      legacy.set(transport.sessionId, transport);
      res.on('close', () => legacy.delete(transport.sessionId));
      await buildMcpServer().connect(transport);
      return;
    }
    const transport = legacy.get(url.searchParams.get('sessionId') ?? '');
    if (!transport) {
      res.writeHead(404).end('unknown session');
      return;
    }
    await transport.handlePostMessage(req, res);
  }

  const http: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    seen.push({
      method: req.method ?? '',
      path: url.pathname,
      user: header(req, 'x-verified-user'),
      sessionId: header(req, 'mcp-session-id'),
      protocolVersion: header(req, 'mcp-protocol-version'),
      lastEventId: header(req, 'last-event-id'),
      traceparent: header(req, 'traceparent'),
      baggage: header(req, 'baggage'),
      closed: new Promise<void>((resolve) => res.once('close', () => resolve())),
    });
    let handling: Promise<void>;
    if (url.pathname === '/mcp') handling = handleStreamable(req, res);
    else if (url.pathname === '/sse' || url.pathname === '/messages') handling = handleLegacy(req, res, url);
    else if (url.pathname === '/hold') {
      // A plain event stream that stays open until the client or the server closes it.
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write(': open\n\n');
      held.add(res);
      res.on('close', () => held.delete(res));
      handling = Promise.resolve();
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      handling = Promise.resolve();
    }
    handling.catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port ?? 0, '127.0.0.1', resolve);
  });

  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    seen,
    ran,
    waitForRan: (where, count) => calls.waitFor(where, count),
    waiting,
    release() {
      for (const release of releases.splice(0)) release();
    },
    announce() {
      for (const server of servers) if (server.isConnected()) server.sendToolListChanged();
    },
    sample() {
      const asked = [...servers]
        .filter((s) => s.isConnected())
        .map((s) => s.server.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'hello' } }], maxTokens: 10 }));
      return Promise.all(asked);
    },
    async close() {
      for (const release of releases.splice(0)) release();
      for (const res of held) res.destroy();
      await Promise.allSettled([...servers].map((s) => s.close()));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

/** The tools, resource template and prompt of `calls`: each records what its handler received. */
function addCalls(server: McpServer, record: (call: Omit<RanCall, 'server'>) => void): void {
  const text = (t: string) => ({ content: [{ type: 'text' as const, text: t }] });
  server.registerTool(
    'query',
    { description: 'pretends to run a read-only SQL query', inputSchema: { sql: z.string().optional() } },
    async (args) => {
      record({ method: 'tools/call', tool: 'query', arguments: args });
      return text(`rows for: ${args.sql ?? ''}`);
    },
  );
  server.registerTool(
    'drop_table',
    { description: 'pretends to drop a table', inputSchema: { table: z.string().optional() } },
    async (args) => {
      record({ method: 'tools/call', tool: 'drop_table', arguments: args });
      return text(`dropped ${args.table ?? ''}`);
    },
  );
  server.registerTool('echo', { description: 'returns its text', inputSchema: { text: z.string().optional() } }, async (args) => {
    record({ method: 'tools/call', tool: 'echo', arguments: args });
    return text(args.text ?? '');
  });
  // A file server's template. The SDK reads the requested URI with WHATWG URL, which resolves dot
  // segments (%2e included) before any template is matched: `uri` is what the server read.
  server.registerResource(
    'files',
    new ResourceTemplate('file:///{+path}', { list: undefined }),
    { mimeType: 'text/plain' },
    async (uri) => {
      const resolved = `file://${new URL(uri.href).pathname}`;
      record({ method: 'resources/read', uri: uri.href, resolved });
      return { contents: [{ uri: uri.href, mimeType: 'text/plain', text: `contents of ${resolved}` }] };
    },
  );
  server.registerPrompt('greet', { description: 'greets someone', argsSchema: { who: z.string().optional() } }, async (args) => {
    record({ method: 'prompts/get', prompt: 'greet', arguments: args });
    return { messages: [{ role: 'user', content: { type: 'text', text: `hello ${args.who ?? ''}` } }] };
  });
}
