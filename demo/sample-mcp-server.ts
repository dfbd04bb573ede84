// A sample MCP server standing in for datastore-mcp: no authentication of its own, it
// trusts X-Verified-User exactly as the real one would behind the sidecar.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

function buildMcpServer(): McpServer {
  const server = new McpServer({ name: 'sample-datastore-mcp', version: '1.0.0' });
  server.registerTool(
    'whoami',
    { description: 'Returns the user the auth sidecar verified (X-Verified-User).' },
    async (extra) => {
      const user = extra.requestInfo?.headers['x-verified-user'];
      return { content: [{ type: 'text', text: `you are ${typeof user === 'string' ? user : 'nobody (no X-Verified-User)'}` }] };
    },
  );
  return server;
}

/** Serves MCP (Streamable HTTP, stateless) at /mcp on the given port of 127.0.0.1. */
export async function startSampleMcpServer(port = 0): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const http = createServer((req, res) => {
    if (!req.url?.startsWith('/mcp')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      return;
    }
    // Stateless: a fresh server and transport per request, closed with the response.
    const mcp = buildMcpServer();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      void transport.close();
      void mcp.close();
    });
    mcp.connect(transport).then(() => transport.handleRequest(req, res)).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(port, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    server: http,
    close: () => new Promise<void>((resolve) => {
      http.closeAllConnections();
      http.close(() => resolve());
    }),
  };
}
