// The ceiling for any Fastify proxy here: @fastify/http-proxy with no authentication.
// TLS_CERT_FILE and TLS_KEY_FILE (as the sidecar reads them): HTTPS on its port.
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';
import proxy from '@fastify/http-proxy';

const https = process.env.TLS_CERT_FILE && { cert: readFileSync(process.env.TLS_CERT_FILE), key: readFileSync(process.env.TLS_KEY_FILE) };
const app = Fastify({ logger: false, ...(https ? { https } : {}) });
await app.register(proxy, { upstream: process.env.UPSTREAM_URL });
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
process.send?.('ready');
