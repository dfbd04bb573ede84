// What ioredis (and Node's sockets and TLS under it) report, said in the sidecar's words: one
// line naming the variable to look at and what to check. Matched in one place, by error code or
// by the reply's first word; anything not in the table keeps its text as `detail`, cut short.

import type { RedisUrl } from '../../config/config.js';

export interface RedisProblem {
  /** Stable, for logs and tests: `connection_refused`, `wrong_password`, `read_only`, … */
  readonly code: string;
  readonly message: string;
  /** The client's own text, only for problems not in the table. */
  readonly detail?: string;
}

const DETAIL_MAX = 200;

const TLS_UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
]);

interface Context {
  readonly url: RedisUrl;
  readonly timeoutMs: number;
  /** Never shown, should an unknown error quote one. */
  readonly secrets?: readonly (string | undefined)[];
}

/**
 * A reply error's text or a socket error's code, read into one problem. Undefined: the error says
 * nothing by itself (a round of the Sentinels in which none was asked).
 */
export function redisProblem(error: unknown, context: Context): RedisProblem | undefined {
  const e = (error ?? {}) as {
    message?: unknown;
    code?: unknown;
    address?: unknown;
    port?: unknown;
    hostname?: unknown;
    lastNodeError?: unknown;
  };
  const text = typeof e.message === 'string' ? e.message : String(error);
  const code = typeof e.code === 'string' ? e.code : '';
  const { url, timeoutMs } = context;

  // The Sentinels: ioredis tries each in turn and sums up with the last one's error.
  const sentinels = /^All sentinels are unreachable/.exec(text);
  if (sentinels !== null) return sentinelProblem(text, url);
  // Cluster: the slots could not be read from any seed node; the last node's error says why.
  if (/Failed to refresh slots cache/.test(text)) {
    const last = e.lastNodeError !== undefined && e.lastNodeError !== null ? redisProblem(e.lastNodeError, context) : undefined;
    if (last !== undefined) return last;
    return problem(
      'cluster_unreachable',
      `no node of REDIS_URL (${url.addresses.join(', ')}) tells the Cluster's slots: check the hosts and ports`,
    );
  }

  const where = typeof e.address === 'string' ? ` at ${e.address}${typeof e.port === 'number' ? `:${e.port}` : ''}` : '';
  switch (code) {
    case 'ECONNREFUSED':
      return problem(
        'connection_refused',
        url.mode === 'sentinel'
          ? `Redis refuses connections${where}, the master the Sentinels name: it is down; counting in Redis resumes when the Sentinels promote a replica (check SENTINEL REPLICAS) or it returns`
          : `Redis refuses connections${where}: check REDIS_URL's host and port, and that Redis runs there`,
      );
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return problem(
        'dns',
        `the Redis host${typeof e.hostname === 'string' ? ` ${e.hostname}` : ''} does not resolve (DNS): check REDIS_URL's host names`,
      );
    case 'ETIMEDOUT':
      return problem(
        'connect_timeout',
        `no connection to Redis within REDIS_TIMEOUT_MS (${timeoutMs} ms): check that the network lets the sidecar reach it (NetworkPolicy, firewall)${url.tls ? ', that the port speaks TLS (else redis://)' : ''}, or raise REDIS_TIMEOUT_MS`,
      );
    case 'ECONNRESET':
    case 'EPIPE':
      if (/secure TLS connection/.test(text)) return tlsMismatch(url);
      return problem(
        'connection_lost',
        `Redis broke off the connection: check its log (a restart, maxclients)${url.tls ? '' : ', and whether the port wants TLS (then rediss://)'}`,
      );
    case 'EPROTO':
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
      return tlsMismatch(url);
    case 'CERT_HAS_EXPIRED':
    case 'CERT_NOT_YET_VALID':
      return problem('tls_certificate_dates', `Redis's TLS certificate is not valid now (${code}): renew it`);
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return problem(
        'tls_certificate_name',
        "Redis's TLS certificate does not name the host connected to: use a name it holds in REDIS_URL (a Sentinel or Cluster names nodes by address unless told to announce host names)",
      );
  }
  if (TLS_UNTRUSTED.has(code)) {
    return problem('tls_untrusted', `Redis's TLS certificate is not trusted (${code}): set REDIS_CA_FILE to the CA that signed it`);
  }

  if (text === 'Command timed out') {
    return problem(
      'command_timeout',
      `Redis did not answer within REDIS_TIMEOUT_MS (${timeoutMs} ms): it is overloaded or far away; check its latency, or raise REDIS_TIMEOUT_MS`,
    );
  }
  if (/enableOfflineQueue options is false|^Connection is closed\.|Cluster is ended/.test(text)) {
    return problem('not_connected', 'not connected to Redis (reconnecting)');
  }
  if (/^Too many Cluster redirections/.test(text)) {
    return problem(
      'cluster_redirections',
      'the Redis Cluster keeps redirecting the same command (MOVED/ASK): its slots are moving or its nodes disagree; check CLUSTER INFO and any resharding under way',
    );
  }

  const word = /^[A-Z]+/.exec(text)?.[0] ?? '';
  switch (word) {
    case 'NOAUTH':
      return problem(
        'no_password',
        'Redis asks for a password and REDIS_URL gives none: write it as redis://:PASSWORD@host:port (percent-encoded)',
      );
    case 'WRONGPASS':
      return problem('wrong_password', "Redis refuses REDIS_URL's user name or password");
    case 'NOPERM':
      return problem(
        'acl',
        "REDIS_URL's user may not run what the limits need (ACL): allow EVAL, EVALSHA, SCRIPT and INFO on the keys under REDIS_KEY_PREFIX",
      );
    case 'READONLY':
      return problem(
        'read_only',
        url.mode === 'sentinel'
          ? 'Redis answered as a read-only replica: a failover demoted the node the sidecar was on; reconnecting to the master the Sentinels name'
          : 'Redis answered as a read-only replica: REDIS_URL names a replica, or a failover demoted it; point REDIS_URL at the primary, or at the Sentinels (redis+sentinel://…)',
      );
    case 'NOREPLICAS':
      return problem(
        'too_few_replicas',
        'Redis refuses writes while fewer replicas than its min-replicas-to-write are in sync: bring the replicas back, or lower that setting',
      );
    case 'MASTERDOWN':
      return problem('replica_without_master', 'Redis answered as a replica that lost its primary: point REDIS_URL at the primary');
    case 'LOADING':
      return problem('loading', 'Redis is loading its data into memory after a restart: counting resumes when it is done');
    case 'OOM':
      return problem(
        'out_of_memory',
        'Redis is out of memory (maxmemory) and refuses writes: raise maxmemory, or let it evict (volatile-ttl suits these short-lived keys)',
      );
    case 'CLUSTERDOWN':
      return problem(
        'cluster_down',
        'the Redis Cluster is down: some hash slots have no node serving them; check CLUSTER INFO on its nodes',
      );
    case 'MOVED':
    case 'ASK':
      return problem('is_cluster', 'Redis at REDIS_URL is a Cluster node: write REDIS_URL as redis+cluster://host:port,…');
    case 'CROSSSLOT':
      return problem(
        'cross_slot',
        'the Redis Cluster refused a command whose keys span two slots: a REDIS_KEY_PREFIX with braces would do this',
      );
  }
  if (/without any password configured|no password is set/i.test(text)) {
    return problem(
      'password_not_needed',
      'REDIS_URL gives a password but Redis asks for none: remove it, or set one on Redis (requirepass)',
    );
  }
  if (/invalid password|invalid username-password/i.test(text)) {
    return problem('wrong_password', "Redis refuses REDIS_URL's user name or password");
  }
  if (/cluster support disabled/i.test(text)) {
    return problem(
      'not_cluster',
      'REDIS_URL says redis+cluster:// but the node is not in cluster mode: write redis:// (or redis+sentinel://)',
    );
  }
  if (/unknown command/i.test(text)) {
    return problem(
      'unknown_command',
      'Redis at REDIS_URL does not know a command the limits use: is it a Sentinel (then write redis+sentinel://…/master-name) or a server older than Redis 6?',
    );
  }
  let detail = text;
  for (const secret of context.secrets ?? []) if (secret !== undefined && secret !== '') detail = detail.replaceAll(secret, '***');
  return { code: 'unknown', message: 'Redis answered with an error the sidecar does not know: see detail', detail: cut(detail) };
}

function sentinelProblem(text: string, url: RedisUrl): RedisProblem | undefined {
  // Without a last error no Sentinel was asked in this round (ioredis starts the list again).
  const last = /Last error: (.*)$/s.exec(text)?.[1];
  if (last === undefined) return undefined;
  const listed = url.addresses.join(', ');
  if (/No such master/i.test(last))
    return problem(
      'sentinel_master_unknown',
      `the Sentinels of REDIS_URL (${listed}) know no master named ${JSON.stringify(url.masterName)}: check the name after the hosts (SENTINEL MASTERS lists them)`,
    );
  if (/NOAUTH/.test(last)) return problem('sentinel_no_password', 'the Sentinels ask for a password: set REDIS_SENTINEL_PASSWORD');
  if (/WRONGPASS|invalid password|invalid username-password/i.test(last))
    return problem('sentinel_wrong_password', 'the Sentinels refuse REDIS_SENTINEL_PASSWORD');
  if (/unknown command/i.test(last))
    return problem(
      'not_sentinel',
      `REDIS_URL lists hosts that are not Sentinels (${listed}): redis+sentinel:// lists the Sentinels (port 26379 by default), not the data nodes`,
    );
  if (/timed out|ETIMEDOUT/.test(last))
    return problem(
      'sentinels_unreachable',
      `no Sentinel of REDIS_URL (${listed}) answers in time: check the network path, or raise REDIS_TIMEOUT_MS`,
    );
  return problem(
    'sentinels_unreachable',
    `no Sentinel of REDIS_URL (${listed}) answers: check their hosts and ports (Sentinels listen on 26379 by default) and that they run`,
  );
}

function tlsMismatch(url: RedisUrl): RedisProblem {
  return problem(
    'tls_mismatch',
    url.tls
      ? 'the TLS handshake with Redis failed: is the port plain Redis (then redis://), or does it want a client certificate?'
      : 'Redis broke off the connection: is the port TLS (then rediss://)?',
  );
}

const problem = (code: string, message: string): RedisProblem => ({ code, message });

const cut = (text: string): string => {
  const line = text.split('\n', 1)[0]!;
  return line.length > DETAIL_MAX ? `${line.slice(0, DETAIL_MAX)}…` : line;
};
