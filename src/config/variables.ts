// The one table of configuration variables: parsing, defaults, messages, --help and
// docs/configuration.md all come from it. Adding a variable is adding a row (and a kind in
// kinds.ts when none fits). Meanings are markdown: --help drops the backticks and shows a link's
// page. Checks between variables live in config.ts, after the table pass.

import { boolean, choice, httpUrl, integer, INVALID, list, optional, secret, show, splitList, text, type Kind } from './kinds.js';
import { redisUrl } from './redis-url.js';
import { issuersFile } from './issuers.js';
import { OTEL_VARIABLES } from './otel.js';

export const SUPPORTED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
export type Algorithm = (typeof SUPPORTED_ALGORITHMS)[number];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** The parsed values of the rows above, by variable name, for a default that depends on them. */
type Earlier = (name: string) => unknown;

export interface Variable<K extends string = string, T = unknown> {
  readonly name: string;
  /** Where the value goes in Config. */
  readonly key: K;
  readonly kind: Kind<T>;
  /** The text an unset variable stands for, parsed like any value; written here only. */
  readonly default?: string | ((earlier: Earlier) => string);
  /** How the default reads in --help and the reference, when not the text itself (markdown). */
  readonly shown?: string;
  readonly required?: true;
  /** A set but empty variable is a value (empty text), not "unset". */
  readonly keepsEmpty?: true;
  readonly meaning: string;
}

const row = <const K extends string, T>(variable: Variable<K, T>): Variable<K, T> => variable;

/** Asymmetric algorithms only: none and HS* are refused, whatever the list says. */
function algorithms(): Kind<readonly Algorithm[]> {
  return {
    accepts: 'comma list',
    parse(value, field) {
      const items = splitList(value);
      const bad = items.filter((a) => !(SUPPORTED_ALGORITHMS as readonly string[]).includes(a));
      if (bad.length > 0 || items.length === 0) {
        return field.problem(
          `${field.name}=${show(value)}: ${bad.length > 0 ? `${bad.join(', ')} not allowed; ` : ''}` +
            `expected a non-empty comma list of asymmetric algorithms from ${SUPPORTED_ALGORITHMS.join(', ')} (never none or HS*)`,
        );
      }
      return items as Algorithm[];
    },
  };
}

/** A number of connections, or auto (undefined: http/connections.ts derives it from memory). */
function connections(): Kind<number | undefined> {
  const count = integer(1, 1_000_000);
  return {
    accepts: '`auto`, 1 to 1000000',
    parse: (value, field) =>
      value === 'auto'
        ? undefined
        : count.parse(value, { ...field, expected: () => field.expected('auto or a whole number from 1 to 1000000') }),
  };
}

const isBrowserOrigin = (origin: string): boolean => {
  try {
    const parsed = new URL(origin);
    return parsed.origin !== 'null' && parsed.origin === origin.toLowerCase();
  } catch {
    return false;
  }
};

/**
 * REDIS_KEY_PREFIX: braces would make the prefix the keys' hash tag, every user's counters in one
 * Cluster slot (or, unbalanced, the keys of one check in different slots).
 */
function keyPrefix(): Kind<string> {
  return {
    accepts: 'text without `{` `}`',
    parse: (value, field) => (/[{}]/.test(value) ? field.expected('a prefix without { or } (the sidecar sets the hash tags)') : value),
  };
}

/** AUDIT: on or off, held as a boolean. */
function onOff(): Kind<boolean> {
  const word = choice(['on', 'off']);
  return {
    accepts: word.accepts,
    parse: (value, field) => {
      const parsed = word.parse(value, field);
      return parsed === INVALID ? INVALID : parsed === 'on';
    },
  };
}

export const VARIABLES = [
  row({
    name: 'OIDC_ISSUER',
    key: 'issuer',
    kind: httpUrl(),
    required: true,
    meaning: 'the exact issuer of the tokens, e.g. https://auth.example.com/realms/coder',
  }),
  row({ name: 'OIDC_JWKS_URI', key: 'jwksUri', kind: optional(httpUrl()), shown: 'from discovery', meaning: 'key set URL' }),
  row({ name: 'OIDC_AUDIENCES', key: 'audiences', kind: list(), meaning: 'comma list of accepted `aud` values' }),
  row({
    name: 'OIDC_ALLOWED_AZP',
    key: 'allowedAzp',
    kind: list(),
    meaning: "comma list of accepted `azp` values (`coder` for Coder's forwarded tokens)",
  }),
  row({
    name: 'OIDC_ALGORITHMS',
    key: 'algorithms',
    kind: algorithms(),
    default: SUPPORTED_ALGORITHMS.join(','),
    meaning: 'allowlist; a symmetric or `none` entry is a config error',
  }),
  row({
    name: 'OIDC_CLOCK_TOLERANCE_SECONDS',
    key: 'clockToleranceSeconds',
    kind: integer(0, 3600),
    default: '30',
    meaning: 'skew allowed on `exp`, `nbf`, `iat`',
  }),
  row({
    name: 'OIDC_USER_CLAIM',
    key: 'userClaim',
    kind: text(),
    default: 'preferred_username',
    meaning: 'claim copied to `X-Verified-User`',
  }),
  row({
    name: 'OIDC_TOKEN_TYPE',
    key: 'tokenType',
    kind: text(),
    default: 'Bearer',
    keepsEmpty: true,
    meaning: 'required `typ` claim; empty disables the check',
  }),
  row({
    name: 'DPOP',
    key: 'dpop',
    kind: choice(['off', 'allow', 'require']),
    default: 'off',
    meaning:
      '`off`: the `Bearer` scheme only; `allow`: DPoP-bound tokens (claim `typ` `DPoP` beside `OIDC_TOKEN_TYPE`) with the `DPoP` scheme and a proof, and bearer tokens; `require`: DPoP-bound tokens only (see [DPoP](security.md#dpop-proof-of-possession))',
  }),
  row({
    name: 'DPOP_PROOF_MAX_AGE_SECONDS',
    key: 'dpopProofMaxAgeSeconds',
    kind: integer(1, 3600),
    default: '60',
    meaning:
      'oldest DPoP proof accepted (by its `iat`; `OIDC_CLOCK_TOLERANCE_SECONDS` allowed into the future); its `jti` is remembered as long, shared by every replica through `REDIS_URL`',
  }),
  row({
    name: 'DPOP_NONCE',
    key: 'dpopNonce',
    kind: onOff(),
    default: 'off',
    meaning:
      "`on`: proofs must carry a nonce the sidecar issued (`DPoP-Nonce`, reason `use_dpop_nonce`); with `REDIS_URL` every replica accepts the others' nonces",
  }),
  row({ name: 'REQUIRED_GROUPS', key: 'requiredGroups', kind: list(), meaning: 'comma list; at least one must be in `groups`' }),
  row({
    name: 'REQUIRED_ROLES',
    key: 'requiredRoles',
    kind: list(),
    meaning: 'comma list; at least one must be in `realm_access.roles`',
  }),
  row({
    name: 'OIDC_INTROSPECTION',
    key: 'introspectionWhen',
    kind: choice(['off', 'missing-claims', 'always']),
    default: 'off',
    meaning:
      "token introspection (RFC 7662) for `OIDC_ISSUER`: `missing-claims` when a token lacks a claim the configuration needs (Keycloak's lightweight access tokens), `always` for every new token (opaque ones too); results are kept until the token expires (see [Several issuers and introspection](security.md#several-issuers-and-introspection))",
  }),
  row({
    name: 'OIDC_INTROSPECTION_ENDPOINT',
    key: 'introspectionEndpoint',
    kind: optional(httpUrl()),
    shown: 'from discovery',
    meaning: 'introspection endpoint of `OIDC_ISSUER`',
  }),
  row({
    name: 'OIDC_INTROSPECTION_CLIENT_ID',
    key: 'introspectionClientId',
    kind: optional(text()),
    meaning: 'client id the sidecar introspects with (a confidential client of the realm)',
  }),
  row({
    name: 'OIDC_INTROSPECTION_CLIENT_SECRET_FILE',
    key: 'introspectionClientSecretFile',
    kind: optional(text()),
    meaning: "file holding that client's secret (a mounted Secret; a new secret is picked up without a restart)",
  }),
  row({
    name: 'ISSUERS_FILE',
    key: 'furtherIssuers',
    kind: issuersFile(),
    meaning:
      'YAML list of further trusted issuers, each with its own key set, audiences, user claim, rules and token exchange (see [Several issuers and introspection](security.md#several-issuers-and-introspection)); the `OIDC_*` variables describe the first',
  }),
  row({
    name: 'UPSTREAM_URL',
    key: 'upstreamUrl',
    kind: httpUrl({
      origin: true,
      check: (url) =>
        url.pathname !== '/' || url.search !== '' ? 'an origin such as http://127.0.0.1:8000, without path or query' : undefined,
    }),
    default: 'http://127.0.0.1:8000',
    meaning: 'where accepted requests go (an origin, no path)',
  }),
  row({
    name: 'UPSTREAM_TIMEOUT_SECONDS',
    key: 'upstreamTimeoutSeconds',
    kind: integer(1, 3600),
    default: '30',
    meaning: 'wait for upstream response headers (not for the body or a stream)',
  }),
  row({
    name: 'FORWARD_AUTHORIZATION',
    key: 'forwardAuthorization',
    kind: boolean(),
    default: 'false',
    meaning:
      "keep the client's token on the forwarded request: the same as `UPSTREAM_TOKEN=forward`, kept for compatibility; the MCP authorization spec forbids passing the client's token on (see [Tokens for the upstream](security.md#tokens-for-the-upstream))",
  }),
  row({
    name: 'UPSTREAM_TOKEN',
    key: 'upstreamToken',
    kind: choice(['none', 'forward', 'exchange']),
    default: (earlier) => (earlier('FORWARD_AUTHORIZATION') === true ? 'forward' : 'none'),
    shown: '`none` (`forward` with `FORWARD_AUTHORIZATION=true`)',
    meaning:
      "what the upstream gets in `Authorization`: `none`; `forward`: the client's own token (against the MCP spec); `exchange`: a token for the upstream from the token endpoint of the issuer that verified the client's (RFC 8693), cached per client token; `TOKEN_EXCHANGE_*` for `OIDC_ISSUER`, `tokenExchange` for each `ISSUERS_FILE` issuer (see [Tokens for the upstream](security.md#tokens-for-the-upstream))",
  }),
  row({
    name: 'TOKEN_EXCHANGE_AUDIENCE',
    key: 'tokenExchangeAudience',
    kind: optional(text()),
    meaning: "the upstream's client in `OIDC_ISSUER` (`audience` of the exchange); required with `UPSTREAM_TOKEN=exchange`",
  }),
  row({
    name: 'TOKEN_EXCHANGE_CLIENT_ID',
    key: 'tokenExchangeClientId',
    kind: optional(text()),
    meaning: "the sidecar's own client in `OIDC_ISSUER`, allowed to exchange tokens; required with `UPSTREAM_TOKEN=exchange`",
  }),
  row({
    name: 'TOKEN_EXCHANGE_CLIENT_SECRET_FILE',
    key: 'tokenExchangeClientSecretFile',
    kind: optional(text()),
    meaning:
      'file holding the secret of `TOKEN_EXCHANGE_CLIENT_ID` (a mounted Secret; a new version is picked up without a restart); required with `UPSTREAM_TOKEN=exchange`',
  }),
  row({
    name: 'RESOURCE_URL',
    key: 'resourceUrl',
    kind: httpUrl({ check: (url) => (url.search !== '' ? 'a URL without query string (RFC 9728)' : undefined) }),
    default: (earlier) => `${earlier('TLS_CERT_FILE') === undefined ? 'http' : 'https'}://localhost:${String(earlier('PORT'))}`,
    shown: '`http://localhost:PORT`',
    meaning: "this proxy's public URL, for RFC 9728 metadata (`https://localhost:PORT` with TLS)",
  }),
  row({
    name: 'RESOURCE_SCOPES',
    key: 'resourceScopes',
    kind: list(),
    meaning: 'comma list published as `scopes_supported` in the RFC 9728 metadata',
  }),
  row({ name: 'PORT', key: 'port', kind: integer(0, 65535), default: '8080', meaning: 'proxy listener port' }),
  row({ name: 'HOST', key: 'host', kind: text(), default: '0.0.0.0', meaning: 'proxy listener address' }),
  row({
    name: 'TLS_CERT_FILE',
    key: 'tlsCertFile',
    kind: optional(text()),
    meaning:
      'PEM certificate chain: the proxy port speaks HTTPS (with `TLS_KEY_FILE`); renewed files are picked up without a restart (see [TLS on the proxy port](operations.md#tls-on-the-proxy-port))',
  }),
  row({
    name: 'TLS_KEY_FILE',
    key: 'tlsKeyFile',
    kind: optional(text()),
    meaning: 'PEM private key of `TLS_CERT_FILE`; set both or neither',
  }),
  row({ name: 'ADMIN_PORT', key: 'adminPort', kind: integer(0, 65535), default: '9090', meaning: 'metrics and health listener port' }),
  row({ name: 'ADMIN_HOST', key: 'adminHost', kind: text(), default: '0.0.0.0', meaning: 'metrics and health listener address' }),
  row({
    name: 'JWKS_REFRESH_SECONDS',
    key: 'jwksRefreshSeconds',
    kind: integer(1, 86400),
    default: '300',
    meaning: 'periodic refresh',
  }),
  row({
    name: 'JWKS_COOLDOWN_SECONDS',
    key: 'jwksCooldownSeconds',
    kind: integer(0, 86400),
    default: '30',
    meaning: 'least time between unknown-`kid` refetches',
  }),
  row({
    name: 'JWKS_MAX_STALE_SECONDS',
    key: 'jwksMaxStaleSeconds',
    kind: integer(1, 30 * 86400),
    default: '86400',
    meaning: 'how long the last good key set serves when refresh fails',
  }),
  row({
    name: 'SHUTDOWN_GRACE_SECONDS',
    key: 'shutdownGraceSeconds',
    kind: integer(0, 3600),
    default: '20',
    meaning: 'drain time after SIGTERM',
  }),
  row({ name: 'LOG_LEVEL', key: 'logLevel', kind: choice(LOG_LEVELS), default: 'info', meaning: `pino level: ${LOG_LEVELS.join(', ')}` }),
  row({
    name: 'MCP_MAX_BODY_BYTES',
    key: 'mcpMaxBodyBytes',
    kind: integer(1024, 64 * 1_048_576),
    default: '1048576',
    meaning:
      'largest MCP POST body (and response body or SSE event) read as JSON-RPC; larger ones pass unread, or are refused (413) when a guard (policy, limits) is configured',
  }),
  row({
    name: 'AUDIT',
    key: 'audit',
    kind: onOff(),
    default: 'on',
    meaning: '`on`: one `"msg":"mcp"` log line per MCP request or notification; `off`: none (metrics stay)',
  }),
  row({
    name: 'AUDIT_ARGUMENTS',
    key: 'auditArguments',
    kind: choice(['names', 'values']),
    default: 'names',
    meaning:
      '`names`: audit lines carry argument names and a SHA-256 of the arguments; `values`: also the values, each cut to `AUDIT_ARGUMENT_BYTES`',
  }),
  row({
    name: 'AUDIT_ARGUMENT_BYTES',
    key: 'auditArgumentBytes',
    kind: integer(1, 65_536),
    default: '256',
    meaning: 'bytes of each argument value kept in an audit line with `AUDIT_ARGUMENTS=values`',
  }),
  row({
    name: 'ALLOWED_ORIGINS',
    key: 'allowedOrigins',
    kind: list({
      valid: isBrowserOrigin,
      expected: 'an origin as browsers send it, scheme://host[:port] without path or trailing slash',
    }),
    meaning:
      'comma list of origins (`scheme://host[:port]`) whose browser requests are served; a request with any other `Origin` gets 403, one without `Origin` is unaffected (see [Security guarantees](security.md#security-guarantees))',
  }),
  row({
    name: 'FORWARD_UNVERIFIED_EMAIL',
    key: 'forwardUnverifiedEmail',
    kind: boolean(),
    default: 'false',
    meaning: 'send `X-Verified-Email` also when the token says `email_verified` is not `true`',
  }),
  row({
    name: 'GROUPS_HEADER_MAX_BYTES',
    key: 'groupsHeaderMaxBytes',
    kind: integer(0, 1_048_576),
    default: '8192',
    meaning:
      'longest `X-Verified-Groups` sent; longer lists are cut at a group and `X-Verified-Groups-Truncated: true` is added (checks see every group)',
  }),
  row({
    name: 'MAX_CONNECTIONS',
    key: 'maxConnections',
    kind: connections(),
    default: 'auto',
    meaning:
      'open client connections at most; `auto`: from the memory limit (cgroup `memory.max`, else 256 MiB) and `MAX_HEADER_BYTES`, at most 8192',
  }),
  row({
    name: 'MAX_HEADER_BYTES',
    key: 'maxHeaderBytes',
    kind: integer(1024, 1_048_576),
    default: '16384',
    meaning: 'request line and headers of a request at most (431 beyond)',
  }),
  row({
    name: 'HEADERS_TIMEOUT_SECONDS',
    key: 'headersTimeoutSeconds',
    kind: integer(1, 3600),
    default: '10',
    meaning: "time a client has to send a request's headers (408 beyond)",
  }),
  row({
    name: 'REQUEST_TIMEOUT_SECONDS',
    key: 'requestTimeoutSeconds',
    kind: integer(1, 86400),
    default: '60',
    meaning: 'time a client has to send a whole request, body included (not the response: streams live on)',
  }),
  row({
    name: 'UNAUTHENTICATED_IDLE_SECONDS',
    key: 'unauthenticatedIdleSeconds',
    kind: integer(1, 3600),
    default: '10',
    meaning: 'idle time allowed to a connection that has not yet carried an accepted request',
  }),
  row({
    name: 'KEEP_ALIVE_TIMEOUT_SECONDS',
    key: 'keepAliveTimeoutSeconds',
    kind: integer(1, 3600),
    default: '72',
    meaning: 'idle time allowed to a connection between requests once a request on it was accepted',
  }),
  row({
    name: 'VERDICT_CACHE_SIZE',
    key: 'verdictCacheSize',
    kind: integer(0, 1_000_000),
    default: '10000',
    meaning:
      'verified tokens remembered until they expire (LRU), plus up to 1000 final rejections (see [Performance](performance.md)); `0` disables both',
  }),
  row({
    name: 'POLICY_FILE',
    key: 'policyFile',
    kind: optional(text()),
    meaning:
      'YAML file of CEL rules deciding which tools, prompts and resources each user sees and calls (see [Tool policy](tool-policy.md)); empty: everything allowed',
  }),
  row({
    name: 'POLICY_MODE',
    key: 'policyMode',
    kind: choice(['enforce', 'audit'], 'enforce or audit'),
    default: 'enforce',
    meaning: '`enforce`, or `audit`: decide, log and count `would_deny`, block nothing',
  }),
  row({
    name: 'RATE_LIMIT_USER_PER_MINUTE',
    key: 'rateLimitUserPerMinute',
    kind: integer(0, 1_000_000),
    default: '0',
    meaning:
      'MCP requests (not notifications) a user (`sub`) may send a minute, across every replica with `REDIS_URL`; `0`: no limit (see [Rate limits](rate-limits.md))',
  }),
  row({
    name: 'RATE_LIMIT_TOOL_PER_MINUTE',
    key: 'rateLimitToolPerMinute',
    kind: integer(0, 1_000_000),
    default: '0',
    meaning: '`tools/call` a user may send a minute to any one tool; `0`: no limit (the policy file can set it per tool)',
  }),
  row({
    name: 'RATE_LIMIT_CONCURRENT_TOOL_CALLS',
    key: 'rateLimitConcurrentToolCalls',
    kind: integer(0, 100_000),
    default: '0',
    meaning: 'tool calls a user may have in flight at once; `0`: no limit',
  }),
  row({
    name: 'RATE_LIMIT_ON_REDIS_ERROR',
    key: 'rateLimitOnRedisError',
    kind: choice(['allow', 'deny']),
    default: 'allow',
    meaning: 'Redis down or slow: `allow` (each replica counts on its own) or `deny` (refuse while Redis cannot answer)',
  }),
  row({
    name: 'RATE_LIMIT_IN_FLIGHT_EXPIRY_SECONDS',
    key: 'rateLimitInFlightExpirySeconds',
    kind: integer(3, 900),
    default: '10',
    meaning:
      "lease of a tool call's in-flight slot in Redis, renewed every third of it while the call runs: a slot not renewed (a replica gone, a slot Redis took after its answer had timed out during a stall) stops counting after this long",
  }),
  row({
    name: 'REDIS_URL',
    key: 'redisUrl',
    kind: redisUrl(),
    meaning:
      'where the counters shared by every replica live: `redis://[:password@]host:port[/db]` (one Redis), `redis+sentinel://[:password@]host:26379,…/master-name[/db]` (a Sentinel group), `redis+cluster://[:password@]host:port,…` (a Redis Cluster); `rediss…` for TLS; empty: each process counts alone (see [Rate limits](rate-limits.md#redis-sentinel-and-redis-cluster))',
  }),
  row({
    name: 'REDIS_SENTINEL_PASSWORD',
    key: 'redisSentinelPassword',
    kind: secret('it is a password'),
    meaning:
      "password of the Sentinels themselves (their `requirepass`), with a `redis+sentinel://` `REDIS_URL`; the data nodes' password is the URL's",
  }),
  row({
    name: 'REDIS_TIMEOUT_MS',
    key: 'redisTimeoutMs',
    kind: integer(10, 60_000),
    default: '250',
    meaning: 'longest wait for a Redis answer (connect and each command); past it `RATE_LIMIT_ON_REDIS_ERROR` decides',
  }),
  row({
    name: 'REDIS_KEY_PREFIX',
    key: 'redisKeyPrefix',
    kind: keyPrefix(),
    default: 'mcp-auth',
    meaning: 'prefix of every Redis key, so deployments can share one Redis (no `{` or `}`: the sidecar sets the hash tags)',
  }),
  row({
    name: 'REDIS_CA_FILE',
    key: 'redisCaFile',
    kind: optional(text()),
    meaning:
      'PEM file of the CA(s) that signed the Redis certificates (`rediss…`: data nodes, Sentinels, Cluster nodes); empty: the system CAs',
  }),
  ...OTEL_VARIABLES,
] as const;
