// Token introspection (RFC 7662) at one issuer: what a token says when it does not say it itself
// (Keycloak's lightweight access tokens leave groups, email and most mapped claims out), or
// whether an opaque token is active at all.
//
// - The client authenticates with HTTP Basic (client_secret_basic); the secret is read from a
//   file (a mounted Secret) and read again when the file changes.
// - Results, active or not, are kept until the token expires, keyed by the token's SHA-256 (never
//   the token), in a bounded LRU; requests for one token at once share one call.
// - The endpoint down (no answer, an error status, not JSON, no boolean `active`): the token is
//   refused with `introspection_unavailable` (503); tokens already introspected are served from
//   the cache until they expire.

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { hash } from 'node:crypto';
import type { Logger } from 'pino';
import type { IntrospectionSettings } from '../config/config.js';
import { Rejection, StartupError } from '../lib/errors.js';
import { Lru } from '../lib/lru.js';
import { watchMountedFiles, type MountedFilesWatch } from '../lib/mounted-files.js';
import { Agent } from '../lib/undici.js';
import { clientBasic, discoverEndpoint, requestJson } from './fetch-json.js';

export type IntrospectionResult = 'active' | 'inactive' | 'error';

export interface IntrospectorOptions {
  readonly issuer: string;
  readonly settings: IntrospectionSettings;
  /** The setting to name when the secret file cannot be read at start (OIDC_INTROSPECTION_CLIENT_SECRET_FILE or ISSUERS_FILE). */
  readonly variable: string;
  readonly logger: Logger;
  readonly now?: () => number;
  readonly maxEntries?: number;
  readonly timeoutMs?: number;
  /** Every call to the endpoint, by result (mcp_auth_introspection_requests_total). */
  readonly onResult?: (result: IntrospectionResult) => void;
}

export type Claims = Record<string, unknown>;

interface Remembered {
  /** The claims of an active token; undefined: inactive. */
  readonly claims: Claims | undefined;
  readonly untilMs: number;
}

const DEFAULT_MAX_ENTRIES = 10_000;
const DEFAULT_TIMEOUT_MS = 5_000;
const MAX_BODY_BYTES = 1 << 20;
/** An inactive answer for a token whose expiry is unknown (an opaque token) is kept this long. */
const INACTIVE_WITHOUT_EXP_MS = 60_000;
const SECRET_SETTLE_MS = 200;
const SECRET_RECHECK_MS = 60_000;
/** Bytes of a client secret at most. */
const MAX_SECRET_BYTES = 4096;

export class Introspector {
  readonly issuer: string;
  readonly when: IntrospectionSettings['when'];
  private readonly cache: Lru<Remembered>;
  private readonly pending = new Map<string, Promise<Remembered>>();
  private readonly agent: InstanceType<typeof Agent>;
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private endpoint: string | undefined;
  private secret: string;
  private watch: MountedFilesWatch | undefined;

  constructor(private readonly options: IntrospectorOptions) {
    this.issuer = options.issuer;
    this.when = options.settings.when;
    this.endpoint = options.settings.endpoint;
    this.cache = new Lru(options.maxEntries ?? DEFAULT_MAX_ENTRIES);
    this.now = options.now ?? Date.now;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.agent = new Agent({ connect: { timeout: this.timeoutMs } });
    const file = options.settings.clientSecretFile;
    try {
      this.secret = secretOf(readFileSync(file, 'utf8'));
    } catch (error) {
      throw new StartupError(
        options.variable,
        file,
        `cannot read the introspection client secret of ${options.issuer}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
  }

  /** Watches the secret file: a rotated Secret is used from the next call on. */
  start(): void {
    const file = this.options.settings.clientSecretFile;
    this.watch = watchMountedFiles([file], () => this.rereadSecret(), {
      settleMs: SECRET_SETTLE_MS,
      recheckMs: SECRET_RECHECK_MS,
      onWatchError: (directory, error) =>
        this.options.logger.warn(
          { directory, err: error.message },
          'introspection: cannot watch the secret file; it is re-read every minute',
        ),
    });
  }

  /** Resolves once a change of the secret file has been read (tests wait on it). */
  async settled(): Promise<void> {
    await this.watch?.settled();
  }

  close(): void {
    this.watch?.close();
    this.agent.close().catch(() => undefined);
  }

  /**
   * The claims the issuer holds for an active token, or a Rejection: `inactive_token`, or
   * `introspection_unavailable` when the endpoint cannot answer and nothing is remembered.
   * `expMs`: when the token expires, if it says so (a JWT); an opaque token's comes from the answer.
   */
  async introspect(token: string, expMs: number | undefined): Promise<Claims> {
    const id = hash('sha256', token, 'binary');
    let remembered = this.cache.get(id);
    if (remembered !== undefined && remembered.untilMs <= this.now()) {
      this.cache.delete(id);
      remembered = undefined;
    }
    if (remembered === undefined) {
      let call = this.pending.get(id);
      if (call === undefined) {
        call = this.ask(token, expMs).finally(() => this.pending.delete(id));
        this.pending.set(id, call);
      }
      remembered = await call;
      this.cache.set(id, remembered);
    }
    if (remembered.claims === undefined) throw new Rejection('inactive_token');
    return remembered.claims;
  }

  private async ask(token: string, expMs: number | undefined): Promise<Remembered> {
    let answer: unknown;
    try {
      this.endpoint ??= await this.discover();
      const { clientId } = this.options.settings;
      answer = await requestJson(this.agent, this.endpoint, {
        method: 'POST',
        headers: {
          authorization: clientBasic(clientId, this.secret),
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
        timeoutMs: this.timeoutMs,
        maxBytes: MAX_BODY_BYTES,
      });
      if (typeof answer !== 'object' || answer === null || Array.isArray(answer) || typeof (answer as Claims).active !== 'boolean') {
        throw new Error('the answer is not a JSON object with a boolean "active"');
      }
    } catch (error) {
      this.options.onResult?.('error');
      // The message names the endpoint and what failed, never the token (it is only in the body).
      this.options.logger.warn({ issuer: this.issuer, err: (error as Error).message }, 'introspection failed');
      throw new Rejection('introspection_unavailable');
    }
    const { active, ...claims } = answer as Claims;
    const exp = typeof claims.exp === 'number' && Number.isFinite(claims.exp) ? claims.exp * 1000 : undefined;
    const untilMs = expMs ?? exp;
    if (active !== true) {
      this.options.onResult?.('inactive');
      return { claims: undefined, untilMs: untilMs ?? this.now() + INACTIVE_WITHOUT_EXP_MS };
    }
    this.options.onResult?.('active');
    // Without an expiry there is nothing to keep it by: the verifier refuses such a token (missing_claim).
    return { claims, untilMs: untilMs ?? this.now() };
  }

  private discover(): Promise<string> {
    return discoverEndpoint(this.agent, this.issuer, 'introspection_endpoint', { timeoutMs: this.timeoutMs, maxBytes: MAX_BODY_BYTES });
  }

  private async rereadSecret(): Promise<void> {
    const file = this.options.settings.clientSecretFile;
    try {
      const secret = secretOf(await readFile(file, 'utf8'));
      if (secret === this.secret) return;
      this.secret = secret;
      this.options.logger.info({ issuer: this.issuer, file }, 'introspection client secret reloaded');
    } catch (error) {
      this.options.logger.warn(
        { issuer: this.issuer, file, err: (error as Error).message },
        'introspection client secret not reloaded: the last one stays',
      );
    }
  }
}

/** The secret as the file holds it, less the line break editors and `kubectl create secret --from-file` leave. */
function secretOf(text: string): string {
  const secret = text.replace(/\r?\n$/, '');
  if (secret === '') throw new Error('the file is empty');
  if (Buffer.byteLength(secret) > MAX_SECRET_BYTES) throw new Error(`the file holds more than ${MAX_SECRET_BYTES} bytes`);
  return secret;
}
