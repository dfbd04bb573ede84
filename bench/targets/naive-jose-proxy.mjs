// What a hand-made middleware usually is: jose's jwtVerify with a remote JWKS on every request.
// TLS_CERT_FILE and TLS_KEY_FILE (as the sidecar reads them): HTTPS on its port.
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';
import proxy from '@fastify/http-proxy';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const jwks = createRemoteJWKSet(new URL(process.env.JWKS_URI));
const https = process.env.TLS_CERT_FILE && { cert: readFileSync(process.env.TLS_CERT_FILE), key: readFileSync(process.env.TLS_KEY_FILE) };
const app = Fastify({ logger: false, ...(https ? { https } : {}) });
await app.register(proxy, {
  upstream: process.env.UPSTREAM_URL,
  preHandler: async (request, reply) => {
    const token = /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
    if (!token) return reply.code(401).send({ error: 'unauthorized' });
    try {
      const { payload } = await jwtVerify(token, jwks, { issuer: process.env.ISSUER });
      request.headers['x-verified-user'] = String(payload.preferred_username);
    } catch {
      return reply.code(401).send({ error: 'invalid_token' });
    }
  },
});
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
process.send?.('ready');
