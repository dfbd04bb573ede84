// An MCP-shaped upstream for bench:mcp: answers each tools/call POST with its id, as JSON
// (/mcp) or as an event stream with one progress event before the result (/mcp-sse).
import { createServer } from 'node:http';

const text = 'x'.repeat(400);
createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const { id } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    const result = JSON.stringify({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text }] } });
    if (req.url.startsWith('/mcp-sse')) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.end(
        `event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":${id},"progress":1}}\n\nevent: message\ndata: ${result}\n\n`,
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(result) });
    res.end(result);
  });
}).listen(Number(process.env.PORT), '127.0.0.1', () => process.send?.('ready'));
