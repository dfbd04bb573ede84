// An MCP upstream for bench:flood-initialize: answers initialize with a new Mcp-Session-Id (as a
// stateful server does), every other request with an empty result; reads whole bodies.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';

createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    let message;
    try {
      message = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      message = {};
    }
    const headers = { 'content-type': 'application/json' };
    let result = {};
    if (message.method === 'initialize') {
      headers['mcp-session-id'] = randomUUID();
      result = { protocolVersion: '2025-11-25', capabilities: {}, serverInfo: { name: 'bench', version: '1' } };
    }
    if (message.id === undefined) return void res.writeHead(202).end();
    res.writeHead(200, headers).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
  });
}).listen(Number(process.env.PORT), '127.0.0.1');
