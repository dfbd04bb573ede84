// The ceiling for any Fastify proxy here: @fastify/http-proxy with no authentication.
import Fastify from 'fastify';
import proxy from '@fastify/http-proxy';

const app = Fastify({ logger: false });
await app.register(proxy, { upstream: process.env.UPSTREAM_URL });
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
process.send?.('ready');
