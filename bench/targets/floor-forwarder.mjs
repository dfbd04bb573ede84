// The floor for forwarding on this stack: Fastify and one undici Pool, as the sidecar forwards,
// with no authentication, logging, metrics or header rules. Not a product: a measuring stick.
import Fastify from 'fastify';
import { Pool } from 'undici';

const upstream = new URL(process.env.UPSTREAM_URL);
const pool = new Pool(upstream.origin, { connections: null });
const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding'];
const app = Fastify({ logger: false });
app.all('/*', (request, reply) => {
  reply.hijack();
  const res = reply.raw;
  const headers = { ...request.headers, host: upstream.host };
  delete headers.authorization;
  pool.dispatch(
    { method: request.method, path: request.url, headers, body: null },
    {
      onRequestStart() {},
      onResponseStart(_controller, status, responseHeaders) {
        for (const name of HOP_BY_HOP) delete responseHeaders[name];
        res.writeHead(status, responseHeaders);
      },
      onResponseData(_controller, chunk) {
        res.write(chunk);
      },
      onResponseEnd() {
        res.end();
      },
      onResponseError() {
        res.destroy();
      },
    },
  );
});
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
