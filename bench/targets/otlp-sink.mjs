// An OTLP/HTTP collector that keeps nothing: answers every export with 200 (an empty
// ExportTraceServiceResponse) and counts what it got; GET /count tells (bench:tracing).
import { createServer } from 'node:http';

let exports = 0;
let bytes = 0;
createServer((req, res) => {
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ exports, bytes }));
    return;
  }
  req.on('data', (chunk) => (bytes += chunk.length));
  req.on('end', () => {
    exports++;
    res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 });
    res.end();
  });
}).listen(Number(process.env.PORT), '127.0.0.1');
