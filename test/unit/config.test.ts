import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ConfigError, loadConfig, SUPPORTED_ALGORITHMS, trustedIssuers } from '../../src/config/config.js';
import { SecretHeaders, tracingSettings } from '../../src/config/otel.js';

const run = promisify(execFile);
const minimal = { OIDC_ISSUER: 'https://auth.example.com/realms/coder', OIDC_ALLOWED_AZP: 'coder' };

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
}

describe('configuration from the environment', () => {
  it('has the documented defaults', () => {
    expect(loadConfig(minimal)).toEqual({
      issuer: 'https://auth.example.com/realms/coder',
      jwksUri: undefined,
      audiences: [],
      allowedAzp: ['coder'],
      algorithms: [...SUPPORTED_ALGORITHMS],
      clockToleranceSeconds: 30,
      userClaim: 'preferred_username',
      tokenType: 'Bearer',
      dpop: 'off',
      dpopProofMaxAgeSeconds: 60,
      dpopNonce: false,
      requiredGroups: [],
      requiredRoles: [],
      introspectionWhen: 'off',
      introspectionEndpoint: undefined,
      introspectionClientId: undefined,
      introspectionClientSecretFile: undefined,
      furtherIssuers: [],
      upstreamUrl: 'http://127.0.0.1:8000',
      upstreamTimeoutSeconds: 30,
      forwardAuthorization: false,
      upstreamToken: 'none',
      tokenExchangeAudience: undefined,
      tokenExchangeClientId: undefined,
      tokenExchangeClientSecretFile: undefined,
      resourceUrl: 'http://localhost:8080',
      resourceScopes: [],
      port: 8080,
      host: '0.0.0.0',
      adminPort: 9090,
      adminHost: '0.0.0.0',
      jwksRefreshSeconds: 300,
      jwksCooldownSeconds: 30,
      jwksMaxStaleSeconds: 86400,
      shutdownGraceSeconds: 20,
      logLevel: 'info',
      verdictCacheSize: 10000,
      allowedOrigins: [],
      forwardUnverifiedEmail: false,
      groupsHeaderMaxBytes: 8192,
      maxConnections: undefined,
      maxHeaderBytes: 16384,
      headersTimeoutSeconds: 10,
      requestTimeoutSeconds: 60,
      unauthenticatedIdleSeconds: 10,
      keepAliveTimeoutSeconds: 72,
      mcpMaxBodyBytes: 1_048_576,
      audit: true,
      auditArguments: 'names',
      auditArgumentBytes: 256,
      policyFile: undefined,
      policyMode: 'enforce',
      rateLimitUserPerMinute: 0,
      rateLimitToolPerMinute: 0,
      rateLimitConcurrentToolCalls: 0,
      rateLimitOnRedisError: 'allow',
      rateLimitInFlightExpirySeconds: 10,
      redisUrl: undefined,
      redisTimeoutMs: 250,
      redisKeyPrefix: 'mcp-auth',
      redisCaFile: undefined,
      otelEndpoint: undefined,
      otelTracesEndpoint: undefined,
      otelProtocol: 'http/protobuf',
      otelTracesProtocol: 'http/protobuf',
      otelHeaders: expect.any(SecretHeaders),
      otelTracesHeaders: expect.any(SecretHeaders),
      otelTimeoutMs: 10_000,
      otelTracesTimeoutMs: 10_000,
      otelServiceName: undefined,
      otelResourceAttributes: {},
      otelTracesSampler: 'parentbased_always_on',
      otelTracesSamplerArg: 1,
      otelQueueSize: 2048,
      otelScheduleDelayMs: 5000,
      otelTracesExporter: 'otlp',
      otelSdkDisabled: false,
    });
    expect(Object.isFrozen(loadConfig(minimal))).toBe(true);
    // No endpoint: no tracing.
    expect(tracingSettings(loadConfig(minimal))).toBeUndefined();
  });

  it('parses lists, booleans and an explicitly empty token type', () => {
    const config = loadConfig({
      ...minimal,
      OIDC_AUDIENCES: ' a, b ,,c',
      FORWARD_AUTHORIZATION: 'TRUE',
      OIDC_TOKEN_TYPE: '',
      OIDC_ALGORITHMS: 'ES256,EdDSA',
    });
    expect(config.audiences).toEqual(['a', 'b', 'c']);
    expect(config.forwardAuthorization).toBe(true);
    // FORWARD_AUTHORIZATION=true is kept working: it stands for UPSTREAM_TOKEN=forward.
    expect(config.upstreamToken).toBe('forward');
    expect(config.tokenType).toBe('');
    expect(config.algorithms).toEqual(['ES256', 'EdDSA']);
  });

  it.each([
    [{ OIDC_ISSUER: '' }, 'OIDC_ISSUER is required'],
    [{ OIDC_ISSUER: 'auth.example.com' }, 'OIDC_ISSUER="auth.example.com": expected an absolute http(s) URL'],
    [{ OIDC_JWKS_URI: 'ftp://x/certs' }, 'OIDC_JWKS_URI="ftp://x/certs": expected an http:// or https:// URL'],
    [{ OIDC_ALLOWED_AZP: '' }, 'OIDC_AUDIENCES and OIDC_ALLOWED_AZP are both empty'],
    [{ OIDC_ALGORITHMS: 'RS256,HS256' }, 'OIDC_ALGORITHMS="RS256,HS256": HS256 not allowed'],
    [{ OIDC_ALGORITHMS: 'none' }, 'OIDC_ALGORITHMS="none": none not allowed'],
    [{ OIDC_CLOCK_TOLERANCE_SECONDS: '-1' }, 'OIDC_CLOCK_TOLERANCE_SECONDS="-1": expected a whole number from 0 to 3600'],
    [{ UPSTREAM_URL: 'http://127.0.0.1:8000/mcp' }, 'UPSTREAM_URL="http://127.0.0.1:8000/mcp": expected an origin'],
    [{ UPSTREAM_TIMEOUT_SECONDS: '0' }, 'UPSTREAM_TIMEOUT_SECONDS="0": expected a whole number from 1 to 3600'],
    [{ FORWARD_AUTHORIZATION: 'yes' }, 'FORWARD_AUTHORIZATION="yes": expected true or false'],
    [{ RESOURCE_URL: 'https://mcp.example.com/?a=1' }, 'RESOURCE_URL="https://mcp.example.com/?a=1": expected a URL without query string'],
    [{ PORT: '80a' }, 'PORT="80a": expected a whole number from 0 to 65535'],
    [{ ADMIN_PORT: '70000' }, 'ADMIN_PORT="70000": expected a whole number from 0 to 65535'],
    [{ PORT: '9000', ADMIN_PORT: '9000' }, 'PORT and ADMIN_PORT are both 9000'],
    [{ JWKS_REFRESH_SECONDS: '0' }, 'JWKS_REFRESH_SECONDS="0": expected a whole number from 1 to 86400'],
    [{ LOG_LEVEL: 'verbose' }, 'LOG_LEVEL="verbose": expected one of fatal, error, warn, info, debug, trace, silent'],
    [
      { ALLOWED_ORIGINS: 'https://coder.example.com/' },
      'ALLOWED_ORIGINS entry "https://coder.example.com/": expected an origin as browsers send it',
    ],
    [{ ALLOWED_ORIGINS: 'coder.example.com' }, 'ALLOWED_ORIGINS entry "coder.example.com": expected an origin'],
    [{ ALLOWED_ORIGINS: 'https://a.example,https://b.example/app' }, 'ALLOWED_ORIGINS entry "https://b.example/app"'],
    [{ MAX_CONNECTIONS: 'lots' }, 'MAX_CONNECTIONS="lots": expected auto or a whole number from 1 to 1000000'],
    [{ MAX_HEADER_BYTES: '100' }, 'MAX_HEADER_BYTES="100": expected a whole number from 1024 to 1048576'],
    [{ HEADERS_TIMEOUT_SECONDS: '90' }, 'HEADERS_TIMEOUT_SECONDS=90 is longer than REQUEST_TIMEOUT_SECONDS=60'],
    [{ UNAUTHENTICATED_IDLE_SECONDS: '0' }, 'UNAUTHENTICATED_IDLE_SECONDS="0": expected a whole number from 1 to 3600'],
    [{ FORWARD_UNVERIFIED_EMAIL: 'maybe' }, 'FORWARD_UNVERIFIED_EMAIL="maybe": expected true or false'],
    [{ DPOP: 'on' }, 'DPOP="on": expected one of off, allow, require'],
    [{ DPOP: 'allow', DPOP_PROOF_MAX_AGE_SECONDS: '0' }, 'DPOP_PROOF_MAX_AGE_SECONDS="0": expected a whole number from 1 to 3600'],
    [{ DPOP_NONCE: 'on' }, 'DPOP_NONCE=on needs DPOP=allow or DPOP=require'],
    [
      { UPSTREAM_TOKEN: 'exchange', TOKEN_EXCHANGE_AUDIENCE: 'a', TOKEN_EXCHANGE_CLIENT_ID: 'b' },
      'UPSTREAM_TOKEN=exchange needs TOKEN_EXCHANGE_CLIENT_SECRET_FILE',
    ],
    [{ UPSTREAM_TOKEN: 'pass' }, 'UPSTREAM_TOKEN="pass": expected one of none, forward, exchange'],
    [{ FORWARD_AUTHORIZATION: 'true', UPSTREAM_TOKEN: 'none' }, 'FORWARD_AUTHORIZATION=true and UPSTREAM_TOKEN=none disagree'],
    [{ GROUPS_HEADER_MAX_BYTES: '-5' }, 'GROUPS_HEADER_MAX_BYTES="-5": expected a whole number from 0 to 1048576'],
  ])('%j is refused, naming the variable and what is expected', (override, message) => {
    const found = problems({ ...minimal, ...override });
    expect(found).toHaveLength(1);
    expect(found[0]).toContain(message);
  });

  it('parses the connection limits and allowed origins', () => {
    const config = loadConfig({ ...minimal, MAX_CONNECTIONS: '500', ALLOWED_ORIGINS: 'https://Coder.example.com, http://localhost:3000' });
    expect(config.maxConnections).toBe(500);
    expect(config.allowedOrigins).toEqual(['https://Coder.example.com', 'http://localhost:3000']);
    expect(loadConfig({ ...minimal, MAX_CONNECTIONS: 'auto' }).maxConnections).toBeUndefined();
  });

  it('takes POLICY_FILE and POLICY_MODE (enforce or audit)', () => {
    const config = loadConfig({ ...minimal, POLICY_FILE: '/etc/policy/policy.yaml', POLICY_MODE: 'audit' });
    expect([config.policyFile, config.policyMode]).toEqual(['/etc/policy/policy.yaml', 'audit']);
    expect(problems({ ...minimal, POLICY_MODE: 'permissive' })).toEqual(['POLICY_MODE="permissive": expected enforce or audit']);
  });

  it('reports every problem at once', () => {
    expect(problems({ OIDC_ISSUER: 'nope', PORT: 'x', LOG_LEVEL: 'loud', OIDC_ALGORITHMS: 'HS512' })).toHaveLength(5);
  });
});

describe('token exchange for each issuer of ISSUERS_FILE', () => {
  const dir = mkdtempSync(join(tmpdir(), 'config-exchange-'));
  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const secret = write('secret', 'the-secret\n');
  const empty = write('empty', ' \n');
  const missing = join(dir, 'no-such-file');
  const exchangeOn = {
    UPSTREAM_TOKEN: 'exchange',
    TOKEN_EXCHANGE_AUDIENCE: 'upstream',
    TOKEN_EXCHANGE_CLIENT_ID: 'sidecar',
    TOKEN_EXCHANGE_CLIENT_SECRET_FILE: secret,
  };

  it('gives every issuer its own audience, client and secret file', () => {
    const file = write(
      'good.yaml',
      `- issuer: https://b.example/realms/b\n  allowedAzp: [coder]\n  tokenExchange:\n    audience: b-upstream\n    clientId: b-sidecar\n    clientSecretFile: ${secret}\n`,
    );
    const issuers = trustedIssuers(loadConfig({ ...minimal, ...exchangeOn, ISSUERS_FILE: file }));
    expect(issuers.map((i) => [i.issuer, i.tokenExchange])).toEqual([
      [minimal.OIDC_ISSUER, { audience: 'upstream', clientId: 'sidecar', clientSecretFile: secret }],
      ['https://b.example/realms/b', { audience: 'b-upstream', clientId: 'b-sidecar', clientSecretFile: secret }],
    ]);
    // Without the exchange, no issuer has one, and an issuers file without sections is fine.
    const plain = write('plain.yaml', '- issuer: https://b.example/realms/b\n  allowedAzp: [coder]\n');
    expect(trustedIssuers(loadConfig({ ...minimal, ISSUERS_FILE: plain })).map((i) => i.tokenExchange)).toEqual([undefined, undefined]);
  });

  it('with UPSTREAM_TOKEN=exchange: an issuer without the section, and every bad field, reported at once', () => {
    const file = write(
      'bad.yaml',
      [
        '- issuer: https://b.example/realms/b',
        '  allowedAzp: [coder]',
        '- issuer: https://c.example/realms/c',
        '  allowedAzp: [coder]',
        '  tokenExchange:',
        '    audience: 7',
        '    clientId: ""',
        `    clientSecretFile: ${missing}`,
        '    colour: blue',
        '- issuer: https://d.example/realms/d',
        '  allowedAzp: [coder]',
        '  tokenExchange: yes',
        '- issuer: https://e.example/realms/e',
        '  allowedAzp: [coder]',
        '  tokenExchange: {}',
        '- issuer: https://f.example/realms/f',
        '  allowedAzp: [coder]',
        `  tokenExchange: { audience: f, clientId: f, clientSecretFile: ${empty} }`,
        '',
      ].join('\n'),
    );
    const at = (line: number, column: number) => `ISSUERS_FILE ${file}:${line}:${column}:`;
    expect(problems({ ...minimal, ...exchangeOn, ISSUERS_FILE: file, PORT: 'x' })).toEqual([
      `${at(9, 5)} unknown key "colour" of a tokenExchange: expected audience, clientId, clientSecretFile`,
      `${at(6, 15)} audience: expected a non-empty string`,
      `${at(7, 15)} clientId: expected a non-empty string`,
      `${at(8, 23)} clientSecretFile: expected a readable file holding the client secret (cannot read it: ENOENT)`,
      `${at(12, 18)} tokenExchange: expected a mapping of audience, clientId, clientSecretFile`,
      `${at(15, 18)} tokenExchange: audience is required (the upstream's client in this issuer)`,
      `${at(15, 18)} tokenExchange: clientId is required (the sidecar's client in this issuer, allowed to exchange tokens)`,
      `${at(15, 18)} tokenExchange: clientSecretFile is required (a file holding that client's secret)`,
      `${at(18, 64)} clientSecretFile: expected a readable file holding the client secret (the file is empty)`,
      'PORT="x": expected a whole number from 0 to 65535',
      'ISSUERS_FILE: issuer "https://b.example/realms/b" has no tokenExchange: UPSTREAM_TOKEN=exchange needs one for every issuer (audience, clientId, clientSecretFile: its own client in that issuer), or its users could never reach the upstream',
    ]);
  });

  it('without UPSTREAM_TOKEN=exchange: a section is refused (it would do nothing), with its bad fields, at once', () => {
    const file = write(
      'off.yaml',
      [
        '- issuer: https://b.example/realms/b',
        '  allowedAzp: [coder]',
        `  tokenExchange: { audience: b, clientId: b, clientSecretFile: ${secret} }`,
        '- issuer: https://c.example/realms/c',
        '  allowedAzp: [coder]',
        '  tokenExchange: { clientId: c, clientSecretFile: ${missing} }'.replace('${missing}', missing),
        '',
      ].join('\n'),
    );
    const at = (line: number, column: number) => `ISSUERS_FILE ${file}:${line}:${column}:`;
    const doesNothing = (issuer: string, mode: string) =>
      `ISSUERS_FILE: issuer "${issuer}" has a tokenExchange but UPSTREAM_TOKEN=${mode}: set UPSTREAM_TOKEN=exchange or drop the section (it would do nothing)`;
    expect(problems({ ...minimal, ISSUERS_FILE: file })).toEqual([
      `${at(6, 18)} tokenExchange: audience is required (the upstream's client in this issuer)`,
      `${at(6, 51)} clientSecretFile: expected a readable file holding the client secret (cannot read it: ENOENT)`,
      doesNothing('https://b.example/realms/b', 'none'),
      doesNothing('https://c.example/realms/c', 'none'),
    ]);
    expect(problems({ ...minimal, UPSTREAM_TOKEN: 'forward', ISSUERS_FILE: file })).toContain(
      doesNothing('https://b.example/realms/b', 'forward'),
    );
  });
});

describe('the process', () => {
  const entry = ['--import', 'tsx', 'src/main.ts'];

  it('exits 1 with one message naming every bad variable', async () => {
    const error = await run(process.execPath, entry, {
      env: { PATH: process.env.PATH, OIDC_ISSUER: 'x', PORT: 'abc', OIDC_ALGORITHMS: 'HS256' },
      timeout: 20_000,
    }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(error?.code).toBe(1);
    for (const name of ['OIDC_ISSUER', 'PORT', 'OIDC_ALGORITHMS', 'OIDC_AUDIENCES and OIDC_ALLOWED_AZP'])
      expect(error?.stderr).toContain(name);
  });

  it('--help prints the variables and exits 0', async () => {
    const { stdout } = await run(process.execPath, [...entry, '--help'], { env: { PATH: process.env.PATH }, timeout: 20_000 });
    expect(stdout).toContain('OIDC_ISSUER');
    expect(stdout).toContain('JWKS_MAX_STALE_SECONDS');
  });
});

describe('MCP audit configuration', () => {
  it('reports a bad AUDIT, AUDIT_ARGUMENTS, MCP_MAX_BODY_BYTES and AUDIT_ARGUMENT_BYTES at once, naming each', () => {
    const env = {
      OIDC_ISSUER: 'https://idp.example.com/realms/coder',
      OIDC_ALLOWED_AZP: 'coder',
      AUDIT: 'maybe',
      AUDIT_ARGUMENTS: 'all',
      MCP_MAX_BODY_BYTES: '10',
      AUDIT_ARGUMENT_BYTES: '-1',
    };
    let error: unknown;
    try {
      loadConfig(env);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const { problems } = error as ConfigError;
    expect(problems).toEqual(
      expect.arrayContaining([
        'AUDIT="maybe": expected one of on, off',
        'AUDIT_ARGUMENTS="all": expected one of names, values',
        'MCP_MAX_BODY_BYTES="10": expected a whole number from 1024 to 67108864',
        'AUDIT_ARGUMENT_BYTES="-1": expected a whole number from 1 to 65536',
      ]),
    );
  });
});
