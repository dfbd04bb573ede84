// Environment → typed, frozen Config, read through the table in variables.ts. Every problem is
// collected and reported at once, naming the variable, the value seen and what is expected.

import { INVALID, show, type Field } from './kinds.js';
import { VARIABLES, type Variable } from './variables.js';
import type { TrustedIssuer } from './issuers.js';

export { RedisUrl, type RedisMode, type RedisNode } from './redis-url.js';
export { Secret } from './kinds.js';
export { helpText } from './reference.js';
export { type IntrospectionSettings, type TokenExchangeSettings, type TrustedIssuer } from './issuers.js';
export { SUPPORTED_ALGORITHMS, VARIABLES, type Algorithm, type Variable } from './variables.js';

type Row = (typeof VARIABLES)[number];
type ValueOf<V> = V extends Variable<string, infer T> ? T : never;

/** One key per row of the table, typed by the row's kind. */
export type Config = { [V in Row as V['key']]: ValueOf<V> };

type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses and validates the environment; throws one ConfigError listing every problem. */
export function loadConfig(env: Env): Readonly<Config> {
  const problems: string[] = [];
  const byName = new Map<string, unknown>();
  const values: Record<string, unknown> = {};

  const read = (variable: Variable) => {
    const given = env[variable.name]?.trim();
    const set = given !== undefined && (given !== '' || variable.keepsEmpty === true);
    const fallback = typeof variable.default === 'function' ? variable.default((name) => byName.get(name)) : variable.default;
    const text = set ? given : fallback;
    let value: unknown = text === undefined ? INVALID : variable.kind.parse(text, field(variable, text, problems));
    if (text === undefined && variable.required === true) problems.push(`${variable.name} is required: ${variable.meaning}`);
    // A bad or missing value stands as the default, so checks between variables still run.
    if (value === INVALID && set && fallback !== undefined) value = variable.kind.parse(fallback, field(variable, fallback, []));
    if (value === INVALID) value = variable.kind.unset?.();
    byName.set(variable.name, value);
    values[variable.key] = value;
  };
  // A default computed from other variables is read once they are.
  for (const variable of VARIABLES) if (typeof variable.default !== 'function') read(variable);
  for (const variable of VARIABLES) if (typeof variable.default === 'function') read(variable);

  const config = values as Config;
  crossChecks(config, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

function field(variable: Variable, text: string, problems: string[]): Field {
  const { name } = variable;
  const secret = variable.kind.secret;
  return {
    name,
    text,
    expected(what) {
      problems.push(
        secret === undefined ? `${name}=${show(text)}: expected ${what}` : `${name}: expected ${what} (value not shown: ${secret})`,
      );
      return INVALID;
    },
    problem(message) {
      problems.push(message);
      return INVALID;
    },
  };
}

/** Rules between variables, after each has been read on its own. */
function crossChecks(config: Config, problems: string[]): void {
  if (config.audiences.length === 0 && config.allowedAzp.length === 0) {
    problems.push(
      'OIDC_AUDIENCES and OIDC_ALLOWED_AZP are both empty: set at least one (OIDC_ALLOWED_AZP=coder accepts tokens Coder forwards)',
    );
  }
  if (config.port === config.adminPort && config.port !== 0) {
    problems.push(`PORT and ADMIN_PORT are both ${config.port}: the proxy and admin listeners need different ports`);
  }
  if ((config.tlsCertFile === undefined) !== (config.tlsKeyFile === undefined)) {
    const [set, unset] = config.tlsCertFile === undefined ? ['TLS_KEY_FILE', 'TLS_CERT_FILE'] : ['TLS_CERT_FILE', 'TLS_KEY_FILE'];
    problems.push(`${set} is set but ${unset} is not: set both (certificate and key) for HTTPS on the proxy port, or neither`);
  }
  if (config.forwardAuthorization && config.upstreamToken !== 'forward') {
    problems.push(
      `FORWARD_AUTHORIZATION=true and UPSTREAM_TOKEN=${config.upstreamToken} disagree: drop FORWARD_AUTHORIZATION (UPSTREAM_TOKEN replaces it)`,
    );
  }
  const exchangeVariables = [
    ['TOKEN_EXCHANGE_AUDIENCE', config.tokenExchangeAudience],
    ['TOKEN_EXCHANGE_CLIENT_ID', config.tokenExchangeClientId],
    ['TOKEN_EXCHANGE_CLIENT_SECRET_FILE', config.tokenExchangeClientSecretFile],
  ] as const;
  for (const [name, value] of exchangeVariables) {
    if (config.upstreamToken === 'exchange' && value === undefined) problems.push(`UPSTREAM_TOKEN=exchange needs ${name}`);
    // Set without the exchange on, they would do nothing: the upstream would get no token of its own.
    if (config.upstreamToken !== 'exchange' && value !== undefined)
      problems.push(
        `${name} is set but UPSTREAM_TOKEN=${config.upstreamToken}: set UPSTREAM_TOKEN=exchange or drop ${name} (it would do nothing)`,
      );
  }
  // Each issuer's tokens are exchanged at its own token endpoint: an issuer without a client
  // there would leave its users no way to the upstream, and a section without the exchange on does nothing.
  for (const { issuer, tokenExchange } of config.furtherIssuers) {
    if (config.upstreamToken === 'exchange' && tokenExchange === undefined) {
      problems.push(
        `ISSUERS_FILE: issuer ${show(issuer)} has no tokenExchange: UPSTREAM_TOKEN=exchange needs one for every issuer (audience, clientId, clientSecretFile: its own client in that issuer), or its users could never reach the upstream`,
      );
    }
    if (config.upstreamToken !== 'exchange' && tokenExchange !== undefined) {
      problems.push(
        `ISSUERS_FILE: issuer ${show(issuer)} has a tokenExchange but UPSTREAM_TOKEN=${config.upstreamToken}: set UPSTREAM_TOKEN=exchange or drop the section (it would do nothing)`,
      );
    }
  }
  if (config.dpopNonce && config.dpop === 'off') {
    problems.push('DPOP_NONCE=on needs DPOP=allow or DPOP=require: with DPOP=off no proof is read');
  }
  if (config.redisSentinelPassword !== undefined && config.redisUrl?.mode !== 'sentinel') {
    problems.push(
      "REDIS_SENTINEL_PASSWORD is set but REDIS_URL is not a redis+sentinel:// URL: the data nodes' password goes in REDIS_URL (value not shown)",
    );
  }
  if (config.introspectionWhen !== 'off') {
    for (const [name, value] of [
      ['OIDC_INTROSPECTION_CLIENT_ID', config.introspectionClientId],
      ['OIDC_INTROSPECTION_CLIENT_SECRET_FILE', config.introspectionClientSecretFile],
    ] as const) {
      if (value === undefined) problems.push(`${name} is required with OIDC_INTROSPECTION=${config.introspectionWhen}`);
    }
  }
  if (config.furtherIssuers.some((i) => i.issuer === config.issuer)) {
    problems.push(`ISSUERS_FILE lists OIDC_ISSUER (${config.issuer}) again: the OIDC_* variables describe it, list only further issuers`);
  }
  const { headersTimeoutSeconds: headers, requestTimeoutSeconds: request } = config;
  if (headers > request) {
    problems.push(
      `HEADERS_TIMEOUT_SECONDS=${headers} is longer than REQUEST_TIMEOUT_SECONDS=${request}: the headers are part of the request`,
    );
  }
}

/** Every trusted issuer: OIDC_ISSUER with the OIDC_* variables first, then ISSUERS_FILE's in order. */
export function trustedIssuers(config: Config): readonly TrustedIssuer[] {
  const first: TrustedIssuer = {
    issuer: config.issuer,
    jwksUri: config.jwksUri,
    audiences: config.audiences,
    allowedAzp: config.allowedAzp,
    userClaim: config.userClaim,
    tokenType: config.tokenType,
    requiredGroups: config.requiredGroups,
    requiredRoles: config.requiredRoles,
    introspection:
      config.introspectionWhen === 'off' || config.introspectionClientId === undefined || config.introspectionClientSecretFile === undefined
        ? undefined
        : {
            endpoint: config.introspectionEndpoint,
            clientId: config.introspectionClientId,
            clientSecretFile: config.introspectionClientSecretFile,
            when: config.introspectionWhen,
          },
    tokenExchange:
      config.upstreamToken !== 'exchange' ||
      config.tokenExchangeAudience === undefined ||
      config.tokenExchangeClientId === undefined ||
      config.tokenExchangeClientSecretFile === undefined
        ? undefined
        : {
            audience: config.tokenExchangeAudience,
            clientId: config.tokenExchangeClientId,
            clientSecretFile: config.tokenExchangeClientSecretFile,
          },
  };
  return [first, ...config.furtherIssuers];
}
