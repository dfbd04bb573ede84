// /healthz and /readyz on the admin port.

import type { FastifyInstance } from 'fastify';
import { connect } from 'node:net';
import type { KeySource } from '../auth/keyset.js';

const UPSTREAM_PROBE_TIMEOUT_MS = 1000;

/** Whether the upstream accepts a TCP connection within a second. */
export function upstreamAcceptsConnections(upstreamUrl: string): Promise<boolean> {
  const url = new URL(upstreamUrl);
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(UPSTREAM_PROBE_TIMEOUT_MS, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

export function registerHealth(
  admin: FastifyInstance,
  { keys, upstreamUrl, isDraining }: { keys: KeySource; upstreamUrl: string; isDraining: () => boolean },
): void {
  admin.get('/healthz', async () => ({ status: 'ok' }));

  admin.get('/readyz', async (_request, reply) => {
    const keySet = keys.status();
    const missing: string[] = [];
    if (isDraining()) missing.push('draining: the process is shutting down');
    if (!keySet.loaded) missing.push('jwks: no key set loaded yet');
    else if (keySet.stale) missing.push('jwks: the last good key set is older than JWKS_MAX_STALE_SECONDS');
    if (!(await upstreamAcceptsConnections(upstreamUrl))) missing.push(`upstream: ${upstreamUrl} refuses TCP connections`);
    const checks = {
      jwks: keySet.loaded && !keySet.stale,
      upstream: !missing.some((m) => m.startsWith('upstream')),
      draining: isDraining(),
    };
    return reply.code(missing.length === 0 ? 200 : 503).send({ ready: missing.length === 0, checks, missing });
  });
}
