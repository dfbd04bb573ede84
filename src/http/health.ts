// /healthz and /readyz on the admin port.

import type { FastifyInstance } from 'fastify';
import { connect } from 'node:net';
import type { KeySource } from '../auth/keyset.js';
import type { TrustedIssuer } from '../config/config.js';

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

/**
 * Readiness needs a usable key set (loaded, not older than JWKS_MAX_STALE_SECONDS). With several
 * issuers one usable set is enough: an issuer's outage reaches every replica alike, so taking this
 * one out of the Service would only refuse the other issuers' users too. An issuer without a
 * usable set is listed under `degraded` (its tokens get 503 jwks_unavailable meanwhile).
 */
export function registerHealth(
  admin: FastifyInstance,
  {
    issuers,
    upstreamUrl,
    isDraining,
  }: { issuers: readonly { issuer: TrustedIssuer; keys: KeySource }[]; upstreamUrl: string; isDraining: () => boolean },
): void {
  admin.get('/healthz', async () => ({ status: 'ok' }));

  admin.get('/readyz', async (_request, reply) => {
    const problems = issuers.map(({ issuer, keys }) => {
      const keySet = keys.status();
      const name = issuers.length === 1 ? 'jwks' : `jwks of ${issuer.issuer}`;
      if (!keySet.loaded) return `${name}: no key set loaded yet`;
      if (keySet.stale) return `${name}: the last good key set is older than JWKS_MAX_STALE_SECONDS`;
      return undefined;
    });
    const usable = problems.some((p) => p === undefined);
    const missing: string[] = [];
    if (isDraining()) missing.push('draining: the process is shutting down');
    if (!usable) missing.push(...(problems as string[]));
    if (!(await upstreamAcceptsConnections(upstreamUrl))) missing.push(`upstream: ${upstreamUrl} refuses TCP connections`);
    const checks = {
      jwks: usable,
      upstream: !missing.some((m) => m.startsWith('upstream')),
      draining: isDraining(),
    };
    const degraded = usable ? problems.filter((p): p is string => p !== undefined) : [];
    return reply
      .code(missing.length === 0 ? 200 : 503)
      .send({ ready: missing.length === 0, checks, missing, ...(degraded.length > 0 ? { degraded } : {}) });
  });
}
