// DPoP (RFC 9449): a DPoP-bound token (`cnf.jkt`) is accepted only with the DPoP scheme and a
// proof, the `DPoP` header, signed by the key the token is bound to, made for this request and
// never seen before. The checks are those of RFC 9449 sections 4.3 and 7.1, each failure one
// rejection reason; they run on every request, after the token's verdict (cached or not), so the
// verdict cache never skips them.
//
// jose verifies the proof (signature with the public key of its header, `typ`, `alg` allowlist,
// `iat` window), imports that key and computes its thumbprint (RFC 7638): proofs come signed by
// many client keys, where the token's own check (verify.ts) is on a few issuer keys. jose is
// loaded only with DPoP on. The rest is checked here: one header, no private key members, `htm`,
// `htu`, `ath`, the key thumbprint against `cnf.jkt`, the nonce, the `jti`.

import { hash } from 'node:crypto';
import type { CryptoKey, JWK } from 'jose';
import { Lru } from '../lib/lru.js';
import type { Config } from '../config/config.js';
import { Rejection } from '../lib/errors.js';
import { hasDuplicateKeys } from '../lib/json-text.js';
import { pathOf } from '../lib/request-target.js';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RequestTrace } from '../tracing/request-trace.js';
import { NonceIssuer } from './dpop-nonce.js';
import { ProofMemory, ReplayMemoryFull, SharedProofMemory, type ReplayCheck } from './dpop-replay.js';

export type DpopConfig = Pick<Config, 'dpop' | 'dpopProofMaxAgeSeconds' | 'algorithms' | 'clockToleranceSeconds' | 'resourceUrl'>;

/** How the token came: `Authorization: Bearer` or `Authorization: DPoP` (with a proof). */
export type Scheme = 'bearer' | 'dpop';

/** What a proof is checked against: the request as received. */
export interface ProofRequest {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: readonly string[];
  /** The request's trace, with tracing on: the check is a span of it. */
  readonly trace?: RequestTrace | undefined;
}

export interface ProofChecker {
  /** Resolves when the request's proof is good for `token`, bound to `jkt`; else rejects with a Rejection. */
  check(request: ProofRequest, token: string, jkt: string): Promise<void>;
  /** The nonce to send in DPoP-Nonce (DPOP_NONCE=on), else undefined. */
  nonce(): string | undefined;
}

// A proof is a short JWT (a header with a public key, a few claims): larger is not a proof.
const MAX_PROOF_LENGTH = 8192;
// Clients' proof headers remembered with their key (each a few hundred bytes and a CryptoKey).
const MAX_PROOF_KEYS = 1000;
const MAX_JTI_LENGTH = 256;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
// RFC 7517/7518 private key members (and `k`, a symmetric key): a proof carries a public key only.
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const UNRESERVED = /[A-Za-z0-9\-._~]/;

const proofError = (detail: string) => new Rejection('invalid_dpop_proof', detail);

/**
 * An http(s) URI as RFC 9449 section 4.3 compares `htu`: query and fragment dropped, after RFC 3986
 * syntax-based normalisation (case of scheme and host, percent-encodings upper-cased and the
 * unreserved ones decoded, dot segments) and scheme-based normalisation (default port, empty
 * path). undefined: not an http(s) URI.
 */
export function normalizedHtu(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username !== '' || url.password !== '') return undefined;
  const path = url.pathname.replace(/%[0-9a-fA-F]{2}/g, (escape) => {
    const character = String.fromCharCode(parseInt(escape.slice(1), 16));
    return UNRESERVED.test(character) ? character : escape.toUpperCase();
  });
  // Decoding may have made dot segments (`%2E%2E`): the URL parser resolves them once more.
  return new URL(`${url.protocol}//${url.host}${path}`).href;
}

/** The public URL of a request, as its proof must name it: RESOURCE_URL's origin (`origin`) and the path received. */
export function publicUrlOf(origin: string, requestTarget: string): string | undefined {
  if (requestTarget.charCodeAt(0) !== 0x2f /* / */) return undefined;
  return normalizedHtu(`${origin}${pathOf(requestTarget)}`);
}

/** The `DPoP` header of a request: exactly one, of bounded length, or why not. */
function proofHeader(rawHeaders: readonly string[]): string {
  let value: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.length === 4 && rawHeaders[i]!.toLowerCase() === 'dpop') {
      if (value !== undefined) throw proofError('several DPoP headers');
      value = rawHeaders[i + 1]!;
    }
  }
  if (value === undefined || value === '') throw proofError('no DPoP proof header');
  if (value.length > MAX_PROOF_LENGTH) throw proofError('DPoP proof is too large');
  if (!COMPACT_JWS.test(value)) throw proofError('DPoP proof is not a compact signed JWT');
  return value;
}

function decodedPart(part: string, what: string): Record<string, unknown> {
  const text = Buffer.from(part, 'base64url').toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw proofError(`DPoP proof ${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw proofError(`DPoP proof ${what} is not a JSON object`);
  // As for tokens (verify.ts): two parsers must never read two different claims from one text.
  if (hasDuplicateKeys(text, value)) throw proofError(`DPoP proof ${what} has duplicate member names`);
  return value as Record<string, unknown>;
}

type Jose = typeof import('jose');

/** jose's verdict on a proof, in our words; jose's messages are not echoed. */
function fromJose(errors: Jose['errors'], error: unknown): Rejection {
  if (error instanceof Rejection) return error;
  if (error instanceof errors.JWTExpired) return proofError('DPoP proof is too old (iat)');
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'typ') return proofError('DPoP proof typ is not dpop+jwt');
    if (error.claim === 'iat' && error.reason === 'check_failed') return proofError('DPoP proof was issued in the future (iat)');
    return proofError(`DPoP proof claim ${error.claim} is missing or invalid`);
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return proofError('DPoP proof signing algorithm is not allowed');
  if (error instanceof errors.JWSSignatureVerificationFailed) return proofError('DPoP proof signature is invalid');
  return proofError('DPoP proof is not a valid signed JWT with a public jwk');
}

export interface ProofCheckerOptions {
  replay: ReplayCheck;
  nonces?: NonceIssuer;
  now?: () => number;
}

/** A proof header checked once: the thumbprint of its key and the key imported for jose. */
interface ProofKey {
  readonly thumbprint: string;
  readonly key: CryptoKey;
}

export async function createProofChecker(
  config: DpopConfig,
  { replay, nonces, now = Date.now }: ProofCheckerOptions,
): Promise<ProofChecker> {
  const { calculateJwkThumbprint, importJWK, jwtVerify, errors } = await import('jose');
  const algorithms: string[] = [...config.algorithms];
  const tolerance = config.clockToleranceSeconds;
  const maxAge = config.dpopProofMaxAgeSeconds;
  // A proof is good from `iat - tolerance` to `iat + maxAge + tolerance`: its jti is kept that long.
  const rememberMs = (maxAge + 2 * tolerance) * 1000;
  const origin = new URL(config.resourceUrl).origin;

  /**
   * A client signs every proof with one key, so every proof it sends has the same protected
   * header (typ, alg, jwk): the header's key is checked, thumbprinted and imported once, the
   * work jose's EmbeddedJWK would redo each time (bench/RESULTS.md). Only checked headers are kept.
   */
  const proofKeys = new Lru<ProofKey>(MAX_PROOF_KEYS);
  async function proofKey(encodedHeader: string): Promise<ProofKey> {
    const known = proofKeys.get(encodedHeader);
    if (known !== undefined) return known;
    const header = decodedPart(encodedHeader, 'header');
    const { jwk, alg } = header;
    if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw proofError('DPoP proof header has no jwk');
    if (PRIVATE_MEMBERS.some((member) => member in jwk)) throw proofError('DPoP proof jwk holds a private or symmetric key');
    if (typeof alg !== 'string' || !algorithms.includes(alg)) throw proofError('DPoP proof signing algorithm is not allowed');
    const { use, alg: keyAlg } = jwk as JWK;
    if ((use !== undefined && use !== 'sig') || (keyAlg !== undefined && keyAlg !== alg)) {
      throw proofError('DPoP proof jwk is not for this signature');
    }
    let entry: ProofKey;
    try {
      const key = await importJWK(jwk as JWK, alg);
      if (!('type' in key) || key.type !== 'public') throw new Error('not a public key');
      entry = { thumbprint: await calculateJwkThumbprint(jwk as JWK, 'sha256'), key };
    } catch {
      throw proofError('DPoP proof jwk is not a public key for its alg');
    }
    // A copy as the key: a slice would keep the whole proof alive.
    proofKeys.set(Buffer.from(encodedHeader, 'latin1').toString('latin1'), entry);
    return entry;
  }

  async function check(request: ProofRequest, token: string, jkt: string): Promise<void> {
    const proof = proofHeader(request.rawHeaders);
    const [encodedHeader, encodedClaims] = proof.split('.') as [string, string];
    const claims = decodedPart(encodedClaims, 'payload');
    const { thumbprint, key: publicKey } = await proofKey(encodedHeader);
    // The cheapest refusal of a stolen token first: a proof by another key than the token's.
    if (thumbprint !== jkt) throw new Rejection('dpop_binding_mismatch', 'DPoP proof is signed by another key than the token is bound to');

    try {
      await jwtVerify(proof, publicKey, {
        typ: 'dpop+jwt',
        algorithms,
        requiredClaims: ['jti', 'htm', 'htu', 'iat'],
        maxTokenAge: maxAge,
        clockTolerance: tolerance,
        currentDate: new Date(now()),
      });
    } catch (error) {
      throw fromJose(errors, error);
    }

    if (claims.htm !== request.method) throw proofError('DPoP proof htm is not the request method');
    const expected = publicUrlOf(origin, request.url);
    if (typeof claims.htu !== 'string' || expected === undefined || normalizedHtu(claims.htu) !== expected) {
      throw proofError('DPoP proof htu is not the URL of the request');
    }
    if (claims.ath !== hash('sha256', token, 'base64url')) throw proofError('DPoP proof ath is not the hash of the token');
    const jti = claims.jti;
    if (typeof jti !== 'string' || jti === '' || jti.length > MAX_JTI_LENGTH) throw proofError('DPoP proof jti is not a short string');
    if (nonces !== undefined && !nonces.valid(claims.nonce)) {
      throw new Rejection('use_dpop_nonce', claims.nonce === undefined ? undefined : 'DPoP proof nonce is not current');
    }

    // Last, so that only a proof good in every other way takes a place in the memory.
    const key = hash('sha256', `${jkt}\n${jti}`, 'base64url');
    let first: boolean;
    try {
      first = await replay.firstUse(key, rememberMs);
    } catch (error) {
      if (error instanceof ReplayMemoryFull)
        throw new Rejection('dpop_replay', 'too many recent DPoP proofs to check for replay: retry shortly');
      throw error;
    }
    if (!first) throw new Rejection('dpop_replay');
  }

  return { check, nonce: () => nonces?.current() };
}

/**
 * Whether the scheme fits the token: a DPoP-bound token only with the DPoP scheme (also with
 * DPOP=off: a stolen bound token never passes as a bearer token), the DPoP scheme only with one.
 */
export function checkBinding(scheme: Scheme, jkt: string | undefined): void {
  if (scheme === 'bearer' && jkt !== undefined) {
    throw new Rejection('dpop_binding_mismatch', 'token is DPoP-bound: send it with the DPoP scheme and a proof');
  }
  if (scheme === 'dpop' && jkt === undefined) throw new Rejection('dpop_binding_mismatch', 'token is not DPoP-bound (no cnf.jkt)');
}

/** DPOP=allow or require, as the request hook takes it: the mode, the algorithms (`algs`) and the proof checks. */
export interface DpopOptions {
  readonly mode: 'allow' | 'require';
  readonly algorithms: readonly string[];
  readonly checker: ProofChecker;
  /** Once Redis answers (or not): agrees on the nonce secret with the other replicas. */
  start(): Promise<void>;
}

/** What the DPoP checks use of the Redis connection: SET, GET and its readiness, which one Redis and a Cluster answer alike. */
export type SharedStore = Pick<Redis, 'set' | 'get'> & { on(event: 'ready', listener: () => void): unknown };

export interface DpopSetup {
  /** The sidecar's Redis connection (REDIS_URL): proofs seen and the nonce secret shared by every replica. */
  redis?: SharedStore;
  now: () => number;
  logger: Logger;
  /** Redis did not answer: the proof was judged by this replica alone (or its own nonces kept). */
  onRedisError: () => void;
}

/** The DPoP checks DPOP, DPOP_NONCE and REDIS_URL ask for; undefined with DPOP=off. */
export async function createDpop(
  config: DpopConfig & Pick<Config, 'dpopNonce' | 'redisKeyPrefix'>,
  { redis, now, logger, onRedisError }: DpopSetup,
): Promise<DpopOptions | undefined> {
  if (config.dpop === 'off') return undefined;
  const memory = new ProofMemory(now);
  const prefix = config.redisKeyPrefix;
  // Counted each time, said once an outage.
  let failing = false;
  redis?.on('ready', () => (failing = false));
  const redisFailed = (error: unknown) => {
    onRedisError();
    if (failing) return;
    failing = true;
    logger.warn(
      { err: (error as Error | undefined)?.message },
      'DPoP: Redis does not answer; proofs are checked for replay by this replica alone',
    );
  };
  const replay = redis === undefined ? memory : new SharedProofMemory(memory, redis, { keyPrefix: prefix, onError: redisFailed });
  const sharing = redis === undefined ? undefined : { redis, key: `${prefix}:dpop-nonce-secret`, onError: redisFailed };
  const nonces = config.dpopNonce ? new NonceIssuer(config.dpopProofMaxAgeSeconds * 1000, now, sharing) : undefined;
  return {
    mode: config.dpop,
    algorithms: config.algorithms,
    checker: await createProofChecker(config, { replay, nonces, now }),
    start: async () => nonces?.share(),
  };
}
