import { readTracingSettings, type TracingSettings } from './otel.js';

// Environment → typed, frozen Config. Every problem is collected and reported at once,
// naming the variable, the value seen and what is expected.

export const SUPPORTED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
export type Algorithm = (typeof SUPPORTED_ALGORITHMS)[number];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface Config {
  issuer: string;
  jwksUri: string | undefined;
  audiences: readonly string[];
  allowedAzp: readonly string[];
  algorithms: readonly Algorithm[];
  clockToleranceSeconds: number;
  userClaim: string;
  tokenType: string;
  requiredGroups: readonly string[];
  requiredRoles: readonly string[];
  upstreamUrl: string;
  upstreamTimeoutSeconds: number;
  forwardAuthorization: boolean;
  resourceUrl: string;
  resourceScopes: readonly string[];
  port: number;
  host: string;
  /** Both set or both undefined: the proxy port speaks HTTPS (http/tls.ts). */
  tlsCertFile: string | undefined;
  tlsKeyFile: string | undefined;
  adminPort: number;
  adminHost: string;
  jwksRefreshSeconds: number;
  jwksCooldownSeconds: number;
  jwksMaxStaleSeconds: number;
  shutdownGraceSeconds: number;
  logLevel: string;
  verdictCacheSize: number;
  mcpMaxBodyBytes: number;
  audit: boolean;
  auditArguments: 'names' | 'values';
  auditArgumentBytes: number;
  allowedOrigins: readonly string[];
  forwardUnverifiedEmail: boolean;
  groupsHeaderMaxBytes: number;
  /** Undefined: derived from the memory limit (see http/connections.ts). */
  maxConnections: number | undefined;
  maxHeaderBytes: number;
  headersTimeoutSeconds: number;
  requestTimeoutSeconds: number;
  unauthenticatedIdleSeconds: number;
  keepAliveTimeoutSeconds: number;
  /** Undefined: no tool policy (everything allowed, no guard installed). */
  policyFile: string | undefined;
  policyMode: 'enforce' | 'audit';
  /** Rate limits by variables (0: off); the policy file's `limits:` section adds to them. */
  rateLimitUserPerMinute: number;
  rateLimitToolPerMinute: number;
  rateLimitConcurrentToolCalls: number;
  rateLimitOnRedisError: 'allow' | 'deny';
  rateLimitInFlightExpirySeconds: number;
  /** Undefined: counters in memory, per process. Its password never reaches a log line (see RedisUrl). */
  redisUrl: RedisUrl | undefined;
  redisTimeoutMs: number;
  redisKeyPrefix: string;
  redisCaFile: string | undefined;
  /** Undefined: no OTLP endpoint (or OTEL_SDK_DISABLED=true): no tracing, nothing of OpenTelemetry loaded. */
  tracing: TracingSettings | undefined;
}

/** REDIS_URL holding its password: logged (JSON) and printed with the password as "***". */
export class RedisUrl {
  readonly #href: string;
  constructor(href: string) {
    this.#href = href;
  }
  /** The URL as given, password included: only for connecting. */
  get href(): string {
    return this.#href;
  }
  toString(): string {
    const url = new URL(this.#href);
    if (url.password !== '') url.password = '***';
    return url.href;
  }
  toJSON(): string {
    return this.toString();
  }
}

type Env = Record<string, string | undefined>;

interface Variable {
  name: string;
  default: string;
  meaning: string;
}

// The one table behind parsing, --help and the README.
export const VARIABLES: readonly Variable[] = [
  { name: 'OIDC_ISSUER', default: 'required', meaning: 'exact issuer, e.g. https://auth.example.com/realms/coder' },
  { name: 'OIDC_JWKS_URI', default: 'from discovery', meaning: 'key set URL' },
  { name: 'OIDC_AUDIENCES', default: 'empty', meaning: 'comma list of accepted aud values' },
  { name: 'OIDC_ALLOWED_AZP', default: 'empty', meaning: "comma list of accepted azp values (coder for Coder's forwarded tokens)" },
  { name: 'OIDC_ALGORITHMS', default: SUPPORTED_ALGORITHMS.join(','), meaning: 'allowlist; a symmetric or none entry is a config error' },
  { name: 'OIDC_CLOCK_TOLERANCE_SECONDS', default: '30', meaning: 'skew allowed on exp, nbf, iat' },
  { name: 'OIDC_USER_CLAIM', default: 'preferred_username', meaning: 'claim copied to X-Verified-User' },
  { name: 'OIDC_TOKEN_TYPE', default: 'Bearer', meaning: 'required typ claim; empty disables the check' },
  { name: 'REQUIRED_GROUPS', default: 'empty', meaning: 'comma list; at least one must be in groups' },
  { name: 'REQUIRED_ROLES', default: 'empty', meaning: 'comma list; at least one must be in realm_access.roles' },
  { name: 'UPSTREAM_URL', default: 'http://127.0.0.1:8000', meaning: 'where accepted requests go (an origin, no path)' },
  { name: 'UPSTREAM_TIMEOUT_SECONDS', default: '30', meaning: 'wait for upstream response headers (not for the body or a stream)' },
  { name: 'FORWARD_AUTHORIZATION', default: 'false', meaning: 'keep the bearer token on the forwarded request' },
  {
    name: 'RESOURCE_URL',
    default: 'http://localhost:PORT',
    meaning: "this proxy's public URL, for RFC 9728 metadata (https://localhost:PORT with TLS)",
  },
  { name: 'RESOURCE_SCOPES', default: 'empty', meaning: 'comma list published as scopes_supported in the RFC 9728 metadata' },
  { name: 'PORT', default: '8080', meaning: 'proxy listener port' },
  { name: 'HOST', default: '0.0.0.0', meaning: 'proxy listener address' },
  {
    name: 'TLS_CERT_FILE',
    default: 'empty',
    meaning: 'PEM certificate chain: the proxy port speaks HTTPS (with TLS_KEY_FILE); renewed files are picked up without a restart',
  },
  { name: 'TLS_KEY_FILE', default: 'empty', meaning: 'PEM private key of TLS_CERT_FILE; set both or neither' },
  { name: 'ADMIN_PORT', default: '9090', meaning: 'metrics and health listener port' },
  { name: 'ADMIN_HOST', default: '0.0.0.0', meaning: 'metrics and health listener address' },
  { name: 'JWKS_REFRESH_SECONDS', default: '300', meaning: 'periodic refresh' },
  { name: 'JWKS_COOLDOWN_SECONDS', default: '30', meaning: 'least time between unknown-kid refetches' },
  { name: 'JWKS_MAX_STALE_SECONDS', default: '86400', meaning: 'how long the last good key set serves when refresh fails' },
  { name: 'SHUTDOWN_GRACE_SECONDS', default: '20', meaning: 'drain time after SIGTERM' },
  { name: 'LOG_LEVEL', default: 'info', meaning: `pino level: ${LOG_LEVELS.join(', ')}` },
  {
    name: 'MCP_MAX_BODY_BYTES',
    default: '1048576',
    meaning:
      'largest MCP POST body (and response body or SSE event) read as JSON-RPC; larger ones pass unread, or are refused (413) when a guard (policy, limits) is configured',
  },
  { name: 'AUDIT', default: 'on', meaning: 'on: one "msg":"mcp" log line per MCP request or notification; off: none (metrics stay)' },
  {
    name: 'AUDIT_ARGUMENTS',
    default: 'names',
    meaning:
      'names: audit lines carry argument names and a SHA-256 of the arguments; values: also the values, each cut to AUDIT_ARGUMENT_BYTES',
  },
  {
    name: 'AUDIT_ARGUMENT_BYTES',
    default: '256',
    meaning: 'bytes of each argument value kept in an audit line with AUDIT_ARGUMENTS=values',
  },
  {
    name: 'ALLOWED_ORIGINS',
    default: 'empty',
    meaning:
      'comma list of origins (scheme://host[:port]) whose browser requests are served; a request with any other Origin gets 403, one without Origin is unaffected',
  },
  {
    name: 'FORWARD_UNVERIFIED_EMAIL',
    default: 'false',
    meaning: 'send X-Verified-Email also when the token says email_verified is not true',
  },
  {
    name: 'GROUPS_HEADER_MAX_BYTES',
    default: '8192',
    meaning:
      'longest X-Verified-Groups sent; longer lists are cut at a group and X-Verified-Groups-Truncated: true is added (checks see every group)',
  },
  {
    name: 'MAX_CONNECTIONS',
    default: 'auto',
    meaning:
      'open client connections at most; auto: from the memory limit (cgroup memory.max, else 256 MiB) and MAX_HEADER_BYTES, at most 8192',
  },
  { name: 'MAX_HEADER_BYTES', default: '16384', meaning: 'request line and headers of a request at most (431 beyond)' },
  { name: 'HEADERS_TIMEOUT_SECONDS', default: '10', meaning: "time a client has to send a request's headers (408 beyond)" },
  {
    name: 'REQUEST_TIMEOUT_SECONDS',
    default: '60',
    meaning: 'time a client has to send a whole request, body included (not the response: streams live on)',
  },
  {
    name: 'UNAUTHENTICATED_IDLE_SECONDS',
    default: '10',
    meaning: 'idle time allowed to a connection that has not yet carried an accepted request',
  },
  {
    name: 'KEEP_ALIVE_TIMEOUT_SECONDS',
    default: '72',
    meaning: 'idle time allowed to a connection between requests once a request on it was accepted',
  },
  {
    name: 'VERDICT_CACHE_SIZE',
    default: '10000',
    meaning: 'verified tokens remembered until they expire (LRU), plus up to 1000 final rejections; 0 disables both',
  },
  {
    name: 'POLICY_FILE',
    default: 'empty',
    meaning:
      'YAML file of CEL rules deciding which tools, prompts and resources each user sees and calls (README: Tool policy); empty: everything allowed',
  },
  { name: 'POLICY_MODE', default: 'enforce', meaning: 'enforce, or audit: decide, log and count would_deny, block nothing' },
  {
    name: 'RATE_LIMIT_USER_PER_MINUTE',
    default: '0',
    meaning: 'MCP requests (not notifications) a user (sub) may send a minute, across every replica with REDIS_URL; 0: no limit',
  },
  {
    name: 'RATE_LIMIT_TOOL_PER_MINUTE',
    default: '0',
    meaning: 'tools/call a user may send a minute to any one tool; 0: no limit (the policy file can set it per tool)',
  },
  { name: 'RATE_LIMIT_CONCURRENT_TOOL_CALLS', default: '0', meaning: 'tool calls a user may have in flight at once; 0: no limit' },
  {
    name: 'RATE_LIMIT_ON_REDIS_ERROR',
    default: 'allow',
    meaning: 'Redis down or slow: allow (each replica counts on its own) or deny (refuse while Redis cannot answer)',
  },
  {
    name: 'RATE_LIMIT_IN_FLIGHT_EXPIRY_SECONDS',
    default: '900',
    meaning: 'an in-flight count in Redis untouched this long is dropped (a replica that crashed mid-call leaks nothing for longer)',
  },
  {
    name: 'REDIS_URL',
    default: 'empty',
    meaning: 'redis://[:password@]host:port[/db] or rediss:// (TLS) for counters shared by every replica; empty: per process',
  },
  {
    name: 'REDIS_TIMEOUT_MS',
    default: '250',
    meaning: 'longest wait for a Redis answer (connect and each command); past it RATE_LIMIT_ON_REDIS_ERROR decides',
  },
  { name: 'REDIS_KEY_PREFIX', default: 'mcp-auth', meaning: 'prefix of every Redis key, so deployments can share one Redis' },
  {
    name: 'REDIS_CA_FILE',
    default: 'empty',
    meaning: 'PEM file of the CA(s) that signed the Redis server certificate (rediss://); empty: the system CAs',
  },
];

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export function helpText(): string {
  const width = Math.max(...VARIABLES.map((v) => v.name.length)) + 2;
  const rows = VARIABLES.map((v) => `  ${v.name.padEnd(width)}${v.meaning} (default: ${v.default})`);
  return [
    'mcp-auth-sidecar: validates Keycloak bearer tokens and proxies to an MCP server.',
    '',
    'Usage: mcp-auth-sidecar            serve (SIGTERM/SIGINT drain and exit 0; SIGHUP is ignored)',
    '       mcp-auth-sidecar --version  print the version',
    '       mcp-auth-sidecar --help     print this',
    '',
    'Configuration comes from the environment:',
    ...rows,
    '',
    'Proxy port: every request needs Authorization: Bearer <JWT>; /.well-known/oauth-protected-resource is public.',
    'Admin port: /metrics, /healthz, /readyz.',
  ].join('\n');
}

/** Parses and validates the environment; throws one ConfigError listing every problem. */
export function loadConfig(env: Env): Readonly<Config> {
  const problems: string[] = [];
  const raw = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };
  const show = (value: string) => JSON.stringify(value);

  const list = (name: string): string[] =>
    (raw(name) ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');

  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const value = raw(name);
    if (value === undefined) return fallback;
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      problems.push(`${name}=${show(value)}: expected a whole number from ${min} to ${max}`);
      return fallback;
    }
    return Number(value);
  };

  const boolean = (name: string, fallback: boolean): boolean => {
    const value = raw(name);
    if (value === undefined) return fallback;
    if (/^(true|false)$/i.test(value)) return value.toLowerCase() === 'true';
    problems.push(`${name}=${show(value)}: expected true or false`);
    return fallback;
  };

  const httpUrl = (name: string, value: string | undefined): URL | undefined => {
    if (value === undefined) return undefined;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      problems.push(`${name}=${show(value)}: expected an absolute http(s) URL`);
      return undefined;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      problems.push(`${name}=${show(value)}: expected an http:// or https:// URL`);
      return undefined;
    }
    if (url.hash !== '' || url.username !== '' || url.password !== '') {
      problems.push(`${name}=${show(value)}: expected a URL without fragment or credentials`);
      return undefined;
    }
    return url;
  };

  const issuer = raw('OIDC_ISSUER');
  if (issuer === undefined) {
    problems.push('OIDC_ISSUER is required: the exact issuer of the tokens, e.g. https://auth.example.com/realms/coder');
  } else {
    httpUrl('OIDC_ISSUER', issuer);
  }
  const jwksUri = raw('OIDC_JWKS_URI');
  httpUrl('OIDC_JWKS_URI', jwksUri);

  const audiences = list('OIDC_AUDIENCES');
  const allowedAzp = list('OIDC_ALLOWED_AZP');
  if (audiences.length === 0 && allowedAzp.length === 0) {
    problems.push(
      'OIDC_AUDIENCES and OIDC_ALLOWED_AZP are both empty: set at least one (OIDC_ALLOWED_AZP=coder accepts tokens Coder forwards)',
    );
  }

  const algorithmsRaw = raw('OIDC_ALGORITHMS');
  const algorithms = algorithmsRaw === undefined ? [...SUPPORTED_ALGORITHMS] : list('OIDC_ALGORITHMS');
  const badAlgorithms = algorithms.filter((a) => !(SUPPORTED_ALGORITHMS as readonly string[]).includes(a));
  if (badAlgorithms.length > 0 || algorithms.length === 0) {
    problems.push(
      `OIDC_ALGORITHMS=${show(algorithmsRaw ?? '')}: ${badAlgorithms.length > 0 ? `${badAlgorithms.join(', ')} not allowed; ` : ''}` +
        `expected a non-empty comma list of asymmetric algorithms from ${SUPPORTED_ALGORITHMS.join(', ')} (never none or HS*)`,
    );
  }

  const clockToleranceSeconds = integer('OIDC_CLOCK_TOLERANCE_SECONDS', 30, 0, 3600);
  const userClaim = raw('OIDC_USER_CLAIM') ?? 'preferred_username';
  // An explicitly empty OIDC_TOKEN_TYPE disables the check, so look at the variable itself.
  const tokenType = env.OIDC_TOKEN_TYPE === undefined ? 'Bearer' : env.OIDC_TOKEN_TYPE.trim();

  const upstreamRaw = raw('UPSTREAM_URL') ?? 'http://127.0.0.1:8000';
  const upstream = httpUrl('UPSTREAM_URL', upstreamRaw);
  if (upstream && (upstream.pathname !== '/' || upstream.search !== '')) {
    problems.push(`UPSTREAM_URL=${show(upstreamRaw)}: expected an origin such as http://127.0.0.1:8000, without path or query`);
  }

  const port = integer('PORT', 8080, 0, 65535);
  const adminPort = integer('ADMIN_PORT', 9090, 0, 65535);
  if (port === adminPort && port !== 0) {
    problems.push(`PORT and ADMIN_PORT are both ${port}: the proxy and admin listeners need different ports`);
  }

  const tlsCertFile = raw('TLS_CERT_FILE');
  const tlsKeyFile = raw('TLS_KEY_FILE');
  if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined)) {
    const [set, unset] = tlsCertFile === undefined ? ['TLS_KEY_FILE', 'TLS_CERT_FILE'] : ['TLS_CERT_FILE', 'TLS_KEY_FILE'];
    problems.push(`${set} is set but ${unset} is not: set both (certificate and key) for HTTPS on the proxy port, or neither`);
  }

  const resourceRaw = raw('RESOURCE_URL') ?? `${tlsCertFile === undefined ? 'http' : 'https'}://localhost:${port}`;
  const resource = httpUrl('RESOURCE_URL', resourceRaw);
  if (resource && resource.search !== '') {
    problems.push(`RESOURCE_URL=${show(resourceRaw)}: expected a URL without query string (RFC 9728)`);
  }

  const logLevel = raw('LOG_LEVEL') ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(`LOG_LEVEL=${show(logLevel)}: expected one of ${LOG_LEVELS.join(', ')}`);
  }

  const choice = <T extends string>(name: string, fallback: T, allowed: readonly T[]): T => {
    const value = raw(name);
    if (value === undefined) return fallback;
    const lower = value.toLowerCase();
    if ((allowed as readonly string[]).includes(lower)) return lower as T;
    problems.push(`${name}=${show(value)}: expected one of ${allowed.join(', ')}`);
    return fallback;
  };
  const redisUrl = (): RedisUrl | undefined => {
    const value = raw('REDIS_URL');
    if (value === undefined) return undefined;
    let url: URL | undefined;
    try {
      url = new URL(value);
    } catch {
      url = undefined;
    }
    // The value may hold a password: name the variable, never echo it.
    if (url === undefined || (url.protocol !== 'redis:' && url.protocol !== 'rediss:') || url.hostname === '') {
      problems.push('REDIS_URL: expected redis://[:password@]host:port[/db] or rediss://... (value not shown: it may hold a password)');
      return undefined;
    }
    if (url.pathname !== '' && url.pathname !== '/' && !/^\/\d+$/.test(url.pathname)) {
      problems.push(`REDIS_URL: the path ${show(url.pathname)} is not a database number such as /0`);
      return undefined;
    }
    return new RedisUrl(value);
  };
  const allowedOrigins = list('ALLOWED_ORIGINS');
  for (const origin of allowedOrigins) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || parsed.origin === 'null' || parsed.origin !== origin.toLowerCase()) {
      problems.push(
        `ALLOWED_ORIGINS entry ${show(origin)}: expected an origin as browsers send it, scheme://host[:port] without path or trailing slash`,
      );
    }
  }

  const maxConnectionsRaw = raw('MAX_CONNECTIONS');
  let maxConnections: number | undefined;
  if (maxConnectionsRaw !== undefined && maxConnectionsRaw !== 'auto') {
    if (/^\d+$/.test(maxConnectionsRaw) && Number(maxConnectionsRaw) >= 1 && Number(maxConnectionsRaw) <= 1_000_000) {
      maxConnections = Number(maxConnectionsRaw);
    } else {
      problems.push(`MAX_CONNECTIONS=${show(maxConnectionsRaw)}: expected auto or a whole number from 1 to 1000000`);
    }
  }
  const headersTimeoutSeconds = integer('HEADERS_TIMEOUT_SECONDS', 10, 1, 3600);
  const requestTimeoutSeconds = integer('REQUEST_TIMEOUT_SECONDS', 60, 1, 86400);
  if (headersTimeoutSeconds > requestTimeoutSeconds) {
    problems.push(
      `HEADERS_TIMEOUT_SECONDS=${headersTimeoutSeconds} is longer than REQUEST_TIMEOUT_SECONDS=${requestTimeoutSeconds}: the headers are part of the request`,
    );
  }

  const policyMode = raw('POLICY_MODE') ?? 'enforce';
  if (policyMode !== 'enforce' && policyMode !== 'audit') {
    problems.push(`POLICY_MODE=${show(policyMode)}: expected enforce or audit`);
  }

  const config: Config = {
    issuer: issuer ?? '',
    jwksUri,
    audiences,
    allowedAzp,
    algorithms: algorithms as Algorithm[],
    clockToleranceSeconds,
    userClaim,
    tokenType,
    requiredGroups: list('REQUIRED_GROUPS'),
    requiredRoles: list('REQUIRED_ROLES'),
    upstreamUrl: upstream ? upstream.origin : upstreamRaw,
    upstreamTimeoutSeconds: integer('UPSTREAM_TIMEOUT_SECONDS', 30, 1, 3600),
    forwardAuthorization: boolean('FORWARD_AUTHORIZATION', false),
    resourceUrl: resourceRaw,
    resourceScopes: list('RESOURCE_SCOPES'),
    port,
    host: raw('HOST') ?? '0.0.0.0',
    tlsCertFile,
    tlsKeyFile,
    adminPort,
    adminHost: raw('ADMIN_HOST') ?? '0.0.0.0',
    jwksRefreshSeconds: integer('JWKS_REFRESH_SECONDS', 300, 1, 86400),
    jwksCooldownSeconds: integer('JWKS_COOLDOWN_SECONDS', 30, 0, 86400),
    jwksMaxStaleSeconds: integer('JWKS_MAX_STALE_SECONDS', 86400, 1, 30 * 86400),
    shutdownGraceSeconds: integer('SHUTDOWN_GRACE_SECONDS', 20, 0, 3600),
    logLevel,
    verdictCacheSize: integer('VERDICT_CACHE_SIZE', 10_000, 0, 1_000_000),
    mcpMaxBodyBytes: integer('MCP_MAX_BODY_BYTES', 1_048_576, 1024, 64 * 1_048_576),
    audit: choice('AUDIT', 'on', ['on', 'off'] as const) === 'on',
    auditArguments: choice('AUDIT_ARGUMENTS', 'names', ['names', 'values'] as const),
    auditArgumentBytes: integer('AUDIT_ARGUMENT_BYTES', 256, 1, 65_536),
    allowedOrigins,
    forwardUnverifiedEmail: boolean('FORWARD_UNVERIFIED_EMAIL', false),
    groupsHeaderMaxBytes: integer('GROUPS_HEADER_MAX_BYTES', 8192, 0, 1_048_576),
    maxConnections,
    maxHeaderBytes: integer('MAX_HEADER_BYTES', 16_384, 1024, 1_048_576),
    headersTimeoutSeconds,
    requestTimeoutSeconds,
    unauthenticatedIdleSeconds: integer('UNAUTHENTICATED_IDLE_SECONDS', 10, 1, 3600),
    keepAliveTimeoutSeconds: integer('KEEP_ALIVE_TIMEOUT_SECONDS', 72, 1, 3600),
    policyFile: raw('POLICY_FILE'),
    policyMode: policyMode as Config['policyMode'],
    rateLimitUserPerMinute: integer('RATE_LIMIT_USER_PER_MINUTE', 0, 0, 1_000_000),
    rateLimitToolPerMinute: integer('RATE_LIMIT_TOOL_PER_MINUTE', 0, 0, 1_000_000),
    rateLimitConcurrentToolCalls: integer('RATE_LIMIT_CONCURRENT_TOOL_CALLS', 0, 0, 100_000),
    rateLimitOnRedisError: choice('RATE_LIMIT_ON_REDIS_ERROR', 'allow', ['allow', 'deny'] as const),
    rateLimitInFlightExpirySeconds: integer('RATE_LIMIT_IN_FLIGHT_EXPIRY_SECONDS', 900, 10, 86400),
    redisUrl: redisUrl(),
    redisTimeoutMs: integer('REDIS_TIMEOUT_MS', 250, 10, 60_000),
    redisKeyPrefix: raw('REDIS_KEY_PREFIX') ?? 'mcp-auth',
    redisCaFile: raw('REDIS_CA_FILE'),
    tracing: readTracingSettings(env, problems),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}
