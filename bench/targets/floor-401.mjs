// The floor for a rejection on this stack: Node's HTTP server answering every request with a
// fixed 401, no Fastify, no logging, no metrics. Not a product: a measuring stick.
import { createServer } from 'node:http';

const body = JSON.stringify({
  error: 'unauthorized',
  reason: 'missing_token',
  error_description: 'no bearer token in the Authorization header',
});
const headers = [
  'content-type',
  'application/json; charset=utf-8',
  'content-length',
  String(Buffer.byteLength(body)),
  'www-authenticate',
  'Bearer resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource"',
  'cache-control',
  'no-store',
];
createServer((_req, res) => {
  res.writeHead(401, headers);
  res.end(body);
}).listen(Number(process.env.PORT), '127.0.0.1');
