// The issuer's signing keys: discovered, fetched, refreshed and kept through outages.
// Keys are imported into node:crypto KeyObjects once per key set, so verifying a token
// costs one synchronous signature check and no per-request import.

import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { Rejection } from '../lib/errors.js';
import { Agent } from '../lib/undici.js';
import { discoverEndpoint, requestJson } from './fetch-json.js';

export interface VerificationKey {
  readonly kid: string | undefined;
  readonly alg: string | undefined;
  readonly key: KeyObject;
  /** The issuer whose key set holds it: a verdict stays valid only while that set does. */
  readonly issuer?: string;
}

export interface KeySetStatus {
  loaded: boolean;
  stale: boolean;
  keys: number;
  lastSuccessMs: number | undefined;
}

/** What the verifier needs from a key set; the seam for other key sources. */
export interface KeySource {
  /** The key for a token header, or a Rejection (unknown_key, jwks_unavailable). Sync when cached. */
  resolve(kid: string | undefined, alg: string): VerificationKey | Promise<VerificationKey>;
  /** Whether a key is still in the current set (cached verdicts of removed keys are void). */
  has(key: VerificationKey): boolean;
  status(): KeySetStatus;
  /** Begins loading and refreshing; resolves after the first attempt, whether it succeeded or not. */
  start(): Promise<void>;
  close(): void;
}

export interface RemoteKeySetOptions {
  issuer: string;
  jwksUri: string | undefined;
  refreshMs: number;
  cooldownMs: number;
  maxStaleMs: number;
  logger: Logger;
  now?: () => number;
  fetchTimeoutMs?: number;
  maxBodyBytes?: number;
  onRefresh?: (result: 'success' | 'failure', keys: number, lastSuccessMs: number | undefined) => void;
}

const DEFAULT_FETCH_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_BODY_BYTES = 1 << 20;
const MAX_RETRY_DELAY_MS = 30_000;
const MIN_RSA_BITS = 2048;

const CURVES_BY_ALG: Record<string, string[]> = {
  ES256: ['P-256'],
  ES384: ['P-384'],
  ES512: ['P-521'],
  EdDSA: ['Ed25519', 'Ed448'],
};

// node:crypto's curve names → JWK's.
const JWK_CURVES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };

/** Whether a key can verify a signature of `alg` (type, curve and the key's own alg). */
export function keyFitsAlgorithm(key: VerificationKey, alg: string): boolean {
  if (key.alg !== undefined && key.alg !== alg) return false;
  const type = key.key.asymmetricKeyType;
  if (alg.startsWith('RS') || alg.startsWith('PS')) return type === 'rsa' || (alg.startsWith('PS') && type === 'rsa-pss');
  const curves = CURVES_BY_ALG[alg];
  if (curves === undefined) return false;
  if (type === 'ec') return curves.includes(JWK_CURVES[key.key.asymmetricKeyDetails?.namedCurve ?? ''] ?? '');
  return (type === 'ed25519' && curves.includes('Ed25519')) || (type === 'ed448' && curves.includes('Ed448'));
}

/** Imports the usable signing keys of a JWKS document; bad keys are skipped, never fatal. */
export function importSigningKeys(
  document: unknown,
  previous: readonly VerificationKey[] = [],
  issuer?: string,
): {
  keys: VerificationKey[];
  skipped: number;
} {
  if (typeof document !== 'object' || document === null || !Array.isArray((document as { keys?: unknown }).keys)) {
    throw new Error('JWKS document has no "keys" array');
  }
  // Keep the same object for an unchanged key so cached verdicts survive a refresh.
  const byJson = new Map(previous.map((k) => [JSON.stringify(k.key.export({ format: 'jwk' })) + (k.kid ?? '') + (k.alg ?? ''), k]));
  const keys: VerificationKey[] = [];
  let skipped = 0;
  for (const jwk of (document as { keys: unknown[] }).keys) {
    const key = importSigningKey(jwk, issuer);
    if (key === undefined) {
      skipped++;
      continue;
    }
    const id = JSON.stringify(key.key.export({ format: 'jwk' })) + (key.kid ?? '') + (key.alg ?? '');
    keys.push(byJson.get(id) ?? key);
  }
  return { keys, skipped };
}

function importSigningKey(jwk: unknown, issuer: string | undefined): VerificationKey | undefined {
  if (typeof jwk !== 'object' || jwk === null) return undefined;
  const { kty, use, kid, alg, key_ops: keyOps } = jwk as Record<string, unknown>;
  if (use !== undefined && use !== 'sig') return undefined;
  if (kty !== 'RSA' && kty !== 'EC' && kty !== 'OKP') return undefined;
  if (kid !== undefined && typeof kid !== 'string') return undefined;
  if (alg !== undefined && typeof alg !== 'string') return undefined;
  if (Array.isArray(keyOps) && !keyOps.includes('verify')) return undefined;
  const { d: _private, ...publicPart } = jwk as Record<string, unknown>;
  try {
    const key = createPublicKey({ key: publicPart as never, format: 'jwk' });
    if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) return undefined;
    return issuer === undefined ? { kid, alg, key } : { kid, alg, key, issuer };
  } catch {
    return undefined;
  }
}

export class RemoteKeySet implements KeySource {
  private keys: VerificationKey[] = [];
  private byKid = new Map<string, VerificationKey[]>();
  private lastSuccessMs: number | undefined;
  private lastUnknownKidFetchMs = Number.NEGATIVE_INFINITY;
  private pending: Promise<void> | undefined;
  private jwksUri: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly now: () => number;
  private readonly fetchTimeoutMs: number;
  // Its own dispatcher, so that close() also closes the connections to the issuer.
  private readonly agent: InstanceType<typeof Agent>;

  constructor(private readonly options: RemoteKeySetOptions) {
    this.now = options.now ?? Date.now;
    this.jwksUri = options.jwksUri;
    this.fetchTimeoutMs = options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
    // A connection attempt ends with the fetch's deadline: undici's own (10 s) would keep
    // trying to reach an issuer that drops packets long after the fetch has given up.
    this.agent = new Agent({ connect: { timeout: this.fetchTimeoutMs } });
  }

  /** Loads the key set, retrying with backoff until the first success, then refreshes periodically. */
  start(): Promise<void> {
    const attempt = (delayMs: number): Promise<void> =>
      this.refresh().then(
        () => this.schedule(this.options.refreshMs, () => attempt(1000)),
        () =>
          this.schedule(this.lastSuccessMs === undefined ? delayMs : this.options.refreshMs, () =>
            attempt(Math.min(delayMs * 2, MAX_RETRY_DELAY_MS)),
          ),
      );
    return attempt(1000);
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.agent.close().catch(() => undefined);
  }

  status(): KeySetStatus {
    const loaded = this.lastSuccessMs !== undefined;
    return {
      loaded,
      stale: loaded && this.now() - this.lastSuccessMs! > this.options.maxStaleMs,
      keys: this.keys.length,
      lastSuccessMs: this.lastSuccessMs,
    };
  }

  has(key: VerificationKey): boolean {
    return this.keys.includes(key);
  }

  resolve(kid: string | undefined, alg: string): VerificationKey | Promise<VerificationKey> {
    const { loaded, stale } = this.status();
    if (!loaded || stale) {
      throw new Rejection(
        'jwks_unavailable',
        loaded ? 'the issuer key set is too old to trust' : 'the issuer key set has not been loaded yet',
      );
    }
    const found = this.find(kid, alg);
    if (found) return found;
    // Unknown kid: perhaps the issuer rotated. Refetch at most once per cooldown; concurrent
    // misses share the fetch under way.
    if (this.pending === undefined && this.now() - this.lastUnknownKidFetchMs >= this.options.cooldownMs) {
      this.lastUnknownKidFetchMs = this.now();
      this.refresh().catch(() => undefined);
    }
    if (this.pending === undefined) throw new Rejection('unknown_key', undefined, this.unknownKeyStands());
    return this.pending.then(
      () => this.find(kid, alg) ?? Promise.reject(new Rejection('unknown_key')),
      () => Promise.reject(new Rejection('unknown_key')),
    );
  }

  /**
   * How long "unknown key" stays the answer for a token: while this key set is the current one,
   * no fetch is under way, no refetch would be allowed yet (the cooldown) and the set is not
   * too old, so that remembering the answer never delays a key that a refetch would bring.
   */
  private unknownKeyStands(): () => boolean {
    const keys = this.keys;
    const untilMs = Math.min(this.lastUnknownKidFetchMs + this.options.cooldownMs, this.lastSuccessMs! + this.options.maxStaleMs);
    return () => this.keys === keys && this.pending === undefined && this.now() < untilMs;
  }

  /** Fetches the key set now; concurrent callers share one fetch. */
  refresh(): Promise<void> {
    this.pending ??= this.load().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private find(kid: string | undefined, alg: string): VerificationKey | undefined {
    const candidates = kid === undefined ? this.keys : this.byKid.get(kid);
    if (candidates === undefined) return undefined;
    const fitting = candidates.filter((k) => keyFitsAlgorithm(k, alg));
    // Without a kid, only an unambiguous key is used.
    return kid === undefined && fitting.length !== 1 ? undefined : fitting[0];
  }

  private schedule(delayMs: number, run: () => unknown): void {
    if (this.closed) return;
    this.timer = setTimeout(run, delayMs);
    this.timer.unref();
  }

  private async load(): Promise<void> {
    try {
      this.jwksUri ??= await this.discover();
      const document = await this.fetchJson(this.jwksUri);
      const { keys, skipped } = importSigningKeys(document, this.keys, this.options.issuer);
      if (keys.length === 0) throw new Error('JWKS has no usable signing key');
      this.keys = keys;
      this.byKid = new Map();
      for (const key of keys) {
        if (key.kid === undefined) continue;
        this.byKid.set(key.kid, [...(this.byKid.get(key.kid) ?? []), key]);
      }
      this.lastSuccessMs = this.now();
      this.options.logger.info({ jwksUri: this.jwksUri, keys: keys.length, skipped }, 'key set loaded');
      this.options.onRefresh?.('success', keys.length, this.lastSuccessMs);
    } catch (error) {
      this.options.logger.warn({ jwksUri: this.jwksUri, err: (error as Error).message }, 'key set refresh failed');
      this.options.onRefresh?.('failure', this.keys.length, this.lastSuccessMs);
      throw error;
    }
  }

  private discover(): Promise<string> {
    return discoverEndpoint(this.agent, this.options.issuer, 'jwks_uri', this.limits());
  }

  /** A bounded GET: timeout, size cap, no redirects. */
  private fetchJson(url: string): Promise<unknown> {
    return requestJson(this.agent, url, this.limits());
  }

  private limits() {
    return { timeoutMs: this.fetchTimeoutMs, maxBytes: this.options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES };
  }
}
