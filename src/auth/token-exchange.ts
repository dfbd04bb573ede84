// UPSTREAM_TOKEN=exchange: the upstream gets a token of its own instead of the client's (the MCP
// authorization spec forbids passing the client's token on). The client's verified token is
// exchanged at the token endpoint (found by OIDC discovery) of the issuer that verified it, by
// RFC 8693 token exchange (Keycloak's standard token exchange): `subject_token` the client's
// token, `audience` the upstream's client in that issuer, the sidecar authenticated as its own
// client there with the secret in a mounted file (re-read when it changes). OIDC_ISSUER's comes
// from TOKEN_EXCHANGE_*, every ISSUERS_FILE issuer's from its `tokenExchange` section; a token is
// never shown to another issuer than its own.
//
// Each issuer's exchanged tokens are cached by the SHA-256 of the client's token until shortly
// before they expire, in an LRU of its own: MAX_CACHED_TOKENS shared out evenly among the
// issuers, so the memory is the same however many there are. Concurrent requests with one
// client token share one exchange. A failed exchange is not cached: the request is answered 502
// (the upstream is never called without the token it expects), counted, and the next request
// tries again.

import { hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { TrustedIssuer } from '../config/config.js';
import { StartupError } from '../lib/errors.js';
import { clientBasic, discoverEndpoint, requestAnswer } from './fetch-json.js';
import { Lru } from '../lib/lru.js';
import { watchMountedFiles, type MountedFilesWatch } from '../lib/mounted-files.js';
import { Agent } from '../lib/undici.js';

/** Exchanged tokens remembered at most, all issuers together (about 2 KB each). */
export const MAX_CACHED_TOKENS = 10_000;
const TIMEOUT_MS = 5_000;
const MAX_BODY_BYTES = 64 * 1024;
// An exchanged token is used until this long before it expires (at most half its lifetime), so
// the upstream never gets one that expires on the way.
const EXPIRY_MARGIN_MS = 10_000;
const SETTLE_MS = 100;
const RECHECK_MS = 60_000;
// RFC 6750 b64token: what may follow `Bearer ` in a header; anything else is not sent on.
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
// A run of token characters (base64 or base64url) this long is no word of an error message: it may be a piece of
// the token the issuer quotes back, and no token reaches the log.
const TOKEN_RUN = /[A-Za-z0-9_~+/-]{24,}/g;
const withoutTokenRuns = (text: string): string => text.replace(TOKEN_RUN, '[redacted]');
const MAX_TOKEN_LENGTH = 16 * 1024;
const ERROR_CODE = /^[\w.-]{1,64}$/;

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

/** The exchange did not give a token: why, in words for the log and the answer (no token data). */
export class TokenExchangeError extends Error {
  constructor(
    message: string,
    /** The issuer's `error` code and `error_description` (cut short), when it answered with them. */
    readonly issuerError?: { readonly code: string; readonly description: string | undefined },
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TokenExchangeError';
  }
}

export interface TokenExchangeOptions {
  issuer: string;
  audience: string;
  clientId: string;
  secretFile: string;
  /** What a start-up error names: TOKEN_EXCHANGE_CLIENT_SECRET_FILE, or ISSUERS_FILE. */
  variable: string;
  logger: Logger;
  now?: () => number;
  /** One call to the token endpoint ended (cached answers are not calls). */
  onExchange?: (result: 'success' | 'failure') => void;
  maxEntries?: number;
  timeoutMs?: number;
}

interface Cached {
  /** The Authorization header value for the upstream. */
  readonly authorization: string;
  readonly untilMs: number;
}

function readSecret(file: string): string {
  const secret = readFileSync(file, 'utf8').trim();
  if (secret === '') throw new Error('the file is empty');
  return secret;
}

/** The `exp` of a JWT, read without verifying (only to know how long to keep it), or undefined. */
function expiryOf(token: string): number | undefined {
  try {
    const exp = (JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown }).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** One issuer's exchange: its token endpoint, its client, its cache. */
export class TokenExchange {
  readonly #options: TokenExchangeOptions;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #cache: Lru<Cached>;
  readonly #pending = new Map<string, Promise<string>>();
  // Its own dispatcher, closed with the exchange: connecting is bounded by the request's deadline.
  readonly #agent: InstanceType<typeof Agent>;
  #secret: string;
  #tokenEndpoint: Promise<string> | undefined;
  #watch: MountedFilesWatch | undefined;

  constructor(options: TokenExchangeOptions) {
    this.#options = options;
    // Every line names the issuer: with several, the operator must know whose client to fix.
    this.#logger = options.logger.child({ issuer: options.issuer });
    this.#now = options.now ?? Date.now;
    this.#cache = new Lru(options.maxEntries ?? MAX_CACHED_TOKENS);
    this.#agent = new Agent({ connect: { timeout: options.timeoutMs ?? TIMEOUT_MS } });
    try {
      this.#secret = readSecret(options.secretFile);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new StartupError(
        options.variable,
        options.secretFile,
        `cannot read the token exchange client secret of ${options.issuer}: ${reason}`,
        { cause: error },
      );
    }
  }

  /** Re-reads the secret when its mounted file changes; a file that cannot be read keeps the last secret. */
  start(): void {
    const { secretFile } = this.#options;
    const logger = this.#logger;
    this.#watch = watchMountedFiles(
      [secretFile],
      async () => {
        try {
          const secret = (await readFile(secretFile, 'utf8')).trim();
          if (secret === '') throw new Error('the file is empty');
          if (secret !== this.#secret) logger.info({ file: secretFile }, 'token exchange: client secret reloaded');
          this.#secret = secret;
        } catch (error) {
          logger.warn(
            { file: secretFile, err: (error as NodeJS.ErrnoException).code ?? (error as Error).message },
            'token exchange: client secret file unreadable; the last secret stays',
          );
        }
      },
      {
        settleMs: SETTLE_MS,
        recheckMs: RECHECK_MS,
        onWatchError: (directory, error) =>
          logger.warn({ directory, err: error.message }, 'token exchange: cannot watch the secret directory; it is re-read every minute'),
      },
    );
  }

  /** Resolves once a pending change of the secret file has been read (tests wait on it). */
  settled(): Promise<void> {
    return this.#watch?.settled() ?? Promise.resolve();
  }

  close(): void {
    this.#watch?.close();
    this.#agent.close().catch(() => undefined);
  }

  /** The Authorization value the upstream gets for a client's token verified by this issuer; rejects with a TokenExchangeError. */
  authorizationFor(subjectToken: string): string | Promise<string> {
    const id = hash('sha256', subjectToken, 'base64');
    const cached = this.#cache.get(id);
    if (cached !== undefined) {
      if (cached.untilMs > this.#now()) return cached.authorization;
      this.#cache.delete(id);
    }
    let pending = this.#pending.get(id);
    if (pending === undefined) {
      pending = this.#exchange(id, subjectToken).finally(() => this.#pending.delete(id));
      this.#pending.set(id, pending);
    }
    return pending;
  }

  async #exchange(id: string, subjectToken: string): Promise<string> {
    const { audience, clientId, onExchange } = this.#options;
    const logger = this.#logger;
    try {
      const endpoint = await this.#endpoint();
      const startedMs = this.#now();
      const { status, json } = await requestAnswer(this.#agent, endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: clientBasic(clientId, this.#secret) },
        body: new URLSearchParams({
          grant_type: GRANT,
          subject_token: subjectToken,
          subject_token_type: ACCESS_TOKEN,
          requested_token_type: ACCESS_TOKEN,
          audience,
        }).toString(),
        timeoutMs: this.#options.timeoutMs ?? TIMEOUT_MS,
        maxBytes: MAX_BODY_BYTES,
      }).catch((error: unknown) => {
        throw new TokenExchangeError('the token endpoint did not answer', undefined, { cause: error });
      });
      const answer = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>;
      if (status !== 200) {
        const code = typeof answer.error === 'string' && ERROR_CODE.test(answer.error) ? answer.error : undefined;
        // The issuer's own words say what to change (a client setting, an audience): logged, bounded, never sent to the client.
        const description =
          typeof answer.error_description === 'string' ? withoutTokenRuns(answer.error_description.slice(0, 300)) : undefined;
        throw new TokenExchangeError(
          `the token endpoint refused the exchange (HTTP ${status})`,
          code === undefined ? undefined : { code, description },
        );
      }
      const token = answer.access_token;
      if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH || !B64TOKEN.test(token)) {
        throw new TokenExchangeError('the token endpoint answered without a usable access_token');
      }
      // A token bound to a key (DPoP) is useless to an upstream that holds no key.
      if (typeof answer.token_type === 'string' && answer.token_type.toLowerCase() !== 'bearer') {
        throw new TokenExchangeError(`the token endpoint issued a ${answer.token_type.slice(0, 16)} token, not a bearer token`);
      }
      const expiresIn = answer.expires_in;
      const expiresMs =
        typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > 0 ? startedMs + expiresIn * 1000 : expiryOf(token);
      const authorization = `Bearer ${token}`;
      if (expiresMs !== undefined) {
        const untilMs = expiresMs - Math.min(EXPIRY_MARGIN_MS, (expiresMs - startedMs) / 2);
        if (untilMs > this.#now()) this.#cache.set(id, { authorization, untilMs });
      }
      onExchange?.('success');
      return authorization;
    } catch (error) {
      onExchange?.('failure');
      const failure =
        error instanceof TokenExchangeError ? error : new TokenExchangeError('the token exchange failed', undefined, { cause: error });
      const cause = failure.cause as { code?: string; message?: string } | undefined;
      logger.warn(
        {
          audience,
          issuerError: failure.issuerError?.code,
          issuerErrorDescription: failure.issuerError?.description,
          cause: cause?.code ?? cause?.message,
        },
        `token exchange failed: ${failure.message}`,
      );
      throw failure;
    }
  }

  /** The issuer's token endpoint, by discovery; a failed discovery is tried again by the next exchange. */
  #endpoint(): Promise<string> {
    this.#tokenEndpoint ??= this.#discover().catch((error: unknown) => {
      this.#tokenEndpoint = undefined;
      throw new TokenExchangeError('the token endpoint could not be discovered', undefined, { cause: error });
    });
    return this.#tokenEndpoint;
  }

  #discover(): Promise<string> {
    return discoverEndpoint(this.#agent, this.#options.issuer, 'token_endpoint', {
      timeoutMs: this.#options.timeoutMs ?? TIMEOUT_MS,
      maxBytes: 1 << 20,
    });
  }
}

export type TokenExchangesOptions = Pick<TokenExchangeOptions, 'logger' | 'now' | 'onExchange' | 'maxEntries' | 'timeoutMs'>;

/**
 * One TokenExchange for each trusted issuer with a `tokenExchange` (the configuration makes that
 * every issuer when UPSTREAM_TOKEN=exchange). A token goes to the exchange of the issuer that
 * verified it and to no other: another issuer could not exchange it, and has no business seeing it.
 */
export class TokenExchanges {
  readonly #byIssuer = new Map<string, TokenExchange>();
  readonly #options: TokenExchangesOptions;

  constructor(issuers: readonly TrustedIssuer[], options: TokenExchangesOptions) {
    this.#options = options;
    const exchanging = issuers.filter((i) => i.tokenExchange);
    // The cache's bound is shared out, so that more issuers never mean more memory.
    const maxEntries = Math.max(1, Math.floor((options.maxEntries ?? MAX_CACHED_TOKENS) / Math.max(1, exchanging.length)));
    for (const entry of exchanging) {
      const settings = entry.tokenExchange!;
      this.#byIssuer.set(
        entry.issuer,
        new TokenExchange({
          ...options,
          issuer: entry.issuer,
          audience: settings.audience,
          clientId: settings.clientId,
          secretFile: settings.clientSecretFile,
          // The first trusted issuer is OIDC_ISSUER, whose exchange the TOKEN_EXCHANGE_* variables describe.
          variable: entry === issuers[0] ? 'TOKEN_EXCHANGE_CLIENT_SECRET_FILE' : 'ISSUERS_FILE',
          maxEntries,
        }),
      );
    }
  }

  /** The Authorization value the upstream gets for a client's token that `issuer` verified; rejects with a TokenExchangeError. */
  authorizationFor(subjectToken: string, issuer: string | undefined): string | Promise<string> {
    const exchange = issuer === undefined ? undefined : this.#byIssuer.get(issuer);
    if (exchange !== undefined) return exchange.authorizationFor(subjectToken);
    // The configuration gives every trusted issuer an exchange: reaching this is a bug, and the
    // token goes nowhere rather than to another issuer's endpoint.
    this.#options.onExchange?.('failure');
    this.#options.logger.error({ issuer }, 'token exchange failed: no token exchange is configured for the issuer of the token');
    return Promise.reject(new TokenExchangeError('no token exchange is configured for the issuer of the token'));
  }

  start(): void {
    for (const exchange of this.#byIssuer.values()) exchange.start();
  }

  close(): void {
    for (const exchange of this.#byIssuer.values()) exchange.close();
  }
}
