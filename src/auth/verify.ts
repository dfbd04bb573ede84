// Token verification: the documented checks in the documented order, each failure a Rejection with its reason.
// The payload is parsed only after the signature verifies.
// The signature is checked with node:crypto on a key imported once (see keyset.ts): the
// whole check is synchronous unless an unknown kid sends us to the issuer.

import { constants, verify as verifySignatureBytes } from 'node:crypto';
import type { Config } from '../config/config.js';
import { Rejection } from '../lib/errors.js';
import type { KeySource, VerificationKey } from './keyset.js';
import { hasDuplicateKeys } from '../lib/json-text.js';

export interface Identity {
  readonly user: string;
  /** The token's `iss`: an MCP session belongs to an issuer and subject (mcp/sessions.ts). */
  readonly issuer?: string;
  readonly subject: string | undefined;
  readonly email: string | undefined;
  readonly groups: readonly string[] | undefined;
  /** Realm roles (`realm_access.roles`): kept only when a tool policy is configured (its CEL `roles`). */
  readonly roles?: readonly string[];
  /** The claims less the per-token ones (PER_TOKEN_CLAIMS): kept only when a tool policy is configured (its CEL `jwt`). */
  readonly claims?: Readonly<Record<string, unknown>>;
  /**
   * The RFC 7638 thumbprint of the key the token is bound to (`cnf.jkt`, RFC 9449): such a token
   * is accepted only with the DPoP scheme and a proof signed by that key, checked every request.
   */
  readonly jkt?: string;
}

export interface Verdict {
  readonly identity: Identity;
  readonly key: VerificationKey;
  /** When the token stops being valid: `exp` plus the clock tolerance, in ms. */
  readonly validUntilMs: number;
}

export type VerifierConfig = Pick<
  Config,
  | 'issuer'
  | 'audiences'
  | 'allowedAzp'
  | 'algorithms'
  | 'clockToleranceSeconds'
  | 'userClaim'
  | 'tokenType'
  | 'requiredGroups'
  | 'requiredRoles'
  | 'policyFile'
  | 'forwardUnverifiedEmail'
  | 'dpop'
>;

export type Verify = (token: string) => Verdict | Promise<Verdict>;

type Claims = Record<string, unknown>;

interface CheckedHeader {
  readonly alg: string;
  readonly kid: string | undefined;
}

// Three base64url parts (the signature may be empty, so that `alg: none` reaches its own reason).
const COMPACT_JWS = /^[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;
// Control characters (C0, DEL, C1) and Unicode line breaks would let a claim smuggle a header;
// white space at either end is trimmed by HTTP on the way to the upstream (and by Go and Node
// when they read the header) but not by the policy, so the two would see different users or groups.
const UNCLEAN = /[\p{Cc}\u2028\u2029]|^\s|\s$/u;
const MAX_FORWARDED_LENGTH = 4096;
const MAX_KNOWN_HEADERS = 100;
// The header must be parsed before any key is known (it names alg and kid); issuers' headers are
// about 100 characters, so a long one is refused before it is parsed.
const MAX_ENCODED_HEADER = 2048;
const MAX_SHARED_IDENTITIES = 10_000;
// Claims that differ from token to token of one login: left out of a policy's `jwt`, so that a
// user's tokens still share one Identity (and a rule cannot depend on a token's age by accident).
const PER_TOKEN_CLAIMS = new Set(['exp', 'iat', 'nbf', 'jti', 'auth_time', 'sid', 'session_state', 'at_hash', 'nonce']);
const ECDSA_SIGNATURE_BYTES: Record<string, number> = { ES256: 64, ES384: 96, ES512: 132 };
// A SHA-256 thumbprint, base64url without padding (RFC 7638, RFC 9449 section 6.1).
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

/** The three parts of a compact JWS, still encoded; never trusts their contents. */
function splitCompact(token: string): { encodedHeader: string; encodedClaims: string; signingInput: Buffer; signature: Buffer } {
  // One pass over the token for the common case; the slow path only words the rejection.
  if (!COMPACT_JWS.test(token)) {
    // eslint-disable-next-line no-control-regex -- control characters are what is looked for
    if (/[\x00-\x20\xa0]/.test(token)) throw new Rejection('malformed_token', 'token contains white space or control characters');
    const parts = token.split('.').length;
    if (parts === 5) throw new Rejection('malformed_token', 'encrypted tokens (JWE) are not accepted');
    if (parts !== 3) throw new Rejection('malformed_token', 'token is not a compact JWS of three parts');
    throw new Rejection('malformed_token', 'token parts are not base64url');
  }
  const headerEnd = token.indexOf('.');
  const payloadEnd = token.indexOf('.', headerEnd + 1);
  return {
    encodedHeader: token.slice(0, headerEnd),
    encodedClaims: token.slice(headerEnd + 1, payloadEnd),
    // The token is ASCII (checked above), so UTF-8 gives the same bytes as Latin-1, twice as fast.
    signingInput: Buffer.from(token.slice(0, payloadEnd)),
    signature: Buffer.from(token.slice(payloadEnd + 1), 'base64url'),
  };
}

function decodeJsonObject(part: string, what: string): Claims {
  const text = Buffer.from(part, 'base64url').toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Rejection('malformed_token', `token ${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Rejection('malformed_token', `token ${what} is not a JSON object`);
  }
  // RFC 7519 lets a parser keep the last of duplicate names; two parsers disagreeing on which
  // `sub` counts is how confusion attacks start, so a duplicate is refused outright.
  if (hasDuplicateKeys(text, value)) throw new Rejection('malformed_token', `token ${what} has duplicate member names`);
  return value as Claims;
}

function signatureIsValid(alg: string, key: VerificationKey, data: Buffer, signature: Buffer): boolean {
  try {
    if (alg === 'EdDSA') return verifySignatureBytes(null, data, key.key, signature);
    const hash = `sha${alg.slice(2)}`;
    if (alg.startsWith('ES')) {
      if (signature.length !== ECDSA_SIGNATURE_BYTES[alg]) return false;
      return verifySignatureBytes(hash, data, { key: key.key, dsaEncoding: 'ieee-p1363' }, signature);
    }
    if (alg.startsWith('PS')) {
      return verifySignatureBytes(
        hash,
        data,
        {
          key: key.key,
          padding: constants.RSA_PKCS1_PSS_PADDING,
          saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
        },
        signature,
      );
    }
    return verifySignatureBytes(hash, data, key.key, signature);
  } catch {
    return false;
  }
}

function numericDate(claims: Claims, name: string): number | undefined {
  const value = claims[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new Rejection('malformed_token', `${name} claim is not a number`);
  }
  return value;
}

/** A claim that becomes a header value: absent, or a clean, bounded string. */
function forwardable(claims: Claims, name: string): string | undefined {
  const value = claims[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || UNCLEAN.test(value) || value.length > MAX_FORWARDED_LENGTH) {
    throw new Rejection(
      'invalid_claim',
      `${name} claim is not a clean string (control characters, white space at either end, or over 4096 characters)`,
    );
  }
  return value;
}

/**
 * Every group, however many: a valid token is never refused for the size of a header we choose
 * to send (the proxy caps X-Verified-Groups, GROUPS_HEADER_MAX_BYTES). The token itself is
 * bounded by MAX_HEADER_BYTES.
 */
function forwardableGroups(claims: Claims): string[] | undefined {
  const value = claims.groups;
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((g) => typeof g === 'string' && !UNCLEAN.test(g) && !g.includes(','))) {
    throw new Rejection('invalid_claim', 'groups claim is not a list of clean strings without commas (nor white space at either end)');
  }
  return value as string[];
}

/** `cnf.jkt`, the key a DPoP-bound token is bound to; other confirmation methods are not read. */
function boundKey(claims: Claims): string | undefined {
  const cnf = claims.cnf;
  if (cnf === undefined) return undefined;
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) throw new Rejection('invalid_claim', 'cnf claim is not an object');
  const jkt = (cnf as Claims).jkt;
  if (jkt === undefined) return undefined;
  if (typeof jkt !== 'string' || !THUMBPRINT.test(jkt))
    throw new Rejection('invalid_claim', 'cnf.jkt claim is not a SHA-256 key thumbprint');
  return jkt;
}

function stringList(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

function sameGroups(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((group, i) => group === b[i]);
}

export function createVerifier(config: VerifierConfig, keys: KeySource, now: () => number = Date.now): Verify {
  const algorithms = new Set<string>(config.algorithms);
  const audiences = new Set(config.audiences);
  const allowedAzp = new Set(config.allowedAzp);
  const toleranceMs = config.clockToleranceSeconds * 1000;
  // With DPoP on, Keycloak's DPoP-bound access tokens (`typ: DPoP`) are access tokens too.
  const dpopType = config.dpop !== 'off';
  const expectedType = dpopType ? `${config.tokenType} or DPoP` : config.tokenType;

  const identities = new Map<string, Identity>();
  const keepClaims = config.policyFile !== undefined;
  /** The policy's claims of a shared Identity, as JSON: what a new token's claims are compared with. */
  const claimsJson = new WeakMap<Identity, string>();
  /**
   * One Identity object per user rather than per token, reused while the claims match exactly:
   * a user's tokens, cached side by side, then share it instead of each keeping an object and
   * its strings alive (bench/RESULTS.md). At most MAX_SHARED_IDENTITIES (then the map starts again).
   */
  function sharedIdentity(
    user: string,
    subject: string | undefined,
    email: string | undefined,
    groups: string[] | undefined,
    jkt: string | undefined,
    all: Claims,
  ): Identity {
    const id = subject ?? user;
    const known = identities.get(id);
    let claims: Claims | undefined;
    let json: string | undefined;
    if (keepClaims) {
      claims = {};
      for (const name in all) if (!PER_TOKEN_CLAIMS.has(name)) claims[name] = all[name];
      json = JSON.stringify(claims);
    }
    if (
      known !== undefined &&
      known.user === user &&
      known.subject === subject &&
      known.email === email &&
      sameGroups(known.groups, groups) &&
      known.jkt === jkt &&
      claimsJson.get(known) === json
    ) {
      return known;
    }
    if (identities.size >= MAX_SHARED_IDENTITIES) identities.clear();
    const identity: Identity = {
      user,
      issuer: config.issuer,
      subject,
      email,
      groups,
      ...(claims === undefined ? {} : { roles: stringList((all.realm_access as { roles?: unknown } | undefined)?.roles), claims }),
      ...(jkt === undefined ? {} : { jkt }),
    };
    if (json !== undefined) claimsJson.set(identity, json);
    identities.set(id, identity);
    return identity;
  }

  function checkClaims(claims: Claims, key: VerificationKey): Verdict {
    if (claims.iss !== config.issuer) throw new Rejection('wrong_issuer');

    const nowMs = now();
    const exp = numericDate(claims, 'exp');
    if (exp === undefined) throw new Rejection('missing_claim', 'token has no exp claim');
    if (exp * 1000 + toleranceMs <= nowMs) throw new Rejection('expired');
    const nbf = numericDate(claims, 'nbf');
    if (nbf !== undefined && nbf * 1000 - toleranceMs > nowMs) throw new Rejection('not_yet_valid');
    const iat = numericDate(claims, 'iat');
    if (iat !== undefined && iat * 1000 - toleranceMs > nowMs) throw new Rejection('not_yet_valid', 'token was issued in the future');

    const audienceOk = stringList(claims.aud).some((a) => audiences.has(a));
    const azpOk = typeof claims.azp === 'string' && allowedAzp.has(claims.azp);
    if (!audienceOk && !azpOk) throw new Rejection('wrong_audience');

    const jkt = boundKey(claims);
    if (config.tokenType !== '' && claims.typ !== config.tokenType && !(dpopType && claims.typ === 'DPoP' && jkt !== undefined)) {
      throw new Rejection('wrong_token_type', `token typ must be ${expectedType}`);
    }

    const userValue = claims[config.userClaim];
    if (userValue === undefined || userValue === '') {
      throw new Rejection('missing_claim', `token has no ${config.userClaim} claim`);
    }
    // An address Keycloak never verified is the user's own typing: not forwarded as verified.
    const email = forwardable(claims, 'email');
    const identity = sharedIdentity(
      forwardable(claims, config.userClaim)!,
      forwardable(claims, 'sub'),
      claims.email_verified === true || config.forwardUnverifiedEmail ? email : undefined,
      forwardableGroups(claims),
      jkt,
      claims,
    );

    if (config.requiredGroups.length > 0 || config.requiredRoles.length > 0) {
      const groups = new Set(stringList(claims.groups));
      const roles = new Set(stringList((claims.realm_access as { roles?: unknown } | undefined)?.roles));
      const granted = config.requiredGroups.some((g) => groups.has(g)) || config.requiredRoles.some((r) => roles.has(r));
      if (!granted) throw new Rejection('forbidden');
    }
    return { identity, key, validUntilMs: exp * 1000 + toleranceMs };
  }

  /** The header's parameters, or why they are refused (the documented order: structure and alg, key, signature, then claims). */
  function checkHeader(header: Claims): CheckedHeader {
    const alg = header.alg;
    if (typeof alg !== 'string' || !algorithms.has(alg)) throw new Rejection('unsupported_algorithm');
    if (header.crit !== undefined) throw new Rejection('malformed_token', 'critical header parameters are not supported');
    if (header.b64 !== undefined) throw new Rejection('malformed_token', 'unencoded payloads are not supported');
    const kid = header.kid;
    if (kid !== undefined && (typeof kid !== 'string' || kid.length > 256)) {
      throw new Rejection('malformed_token', 'kid header is not a short string');
    }
    return { alg, kid };
  }
  // An issuer signs every token of a key with the same header: decode and check it once.
  // Only headers that pass the checks are kept, at most MAX_KNOWN_HEADERS (then the map starts again).
  const knownHeaders = new Map<string, CheckedHeader>();
  function remember(encodedHeader: string, checked: CheckedHeader): CheckedHeader {
    if (knownHeaders.size >= MAX_KNOWN_HEADERS) knownHeaders.clear();
    // A copy as the key: a slice of the token would keep the whole bearer token in memory.
    knownHeaders.set(Buffer.from(encodedHeader, 'latin1').toString('latin1'), checked);
    return checked;
  }

  return function verify(token: string): Verdict | Promise<Verdict> {
    const { encodedHeader, encodedClaims, signingInput, signature } = splitCompact(token);
    if (encodedHeader.length > MAX_ENCODED_HEADER) throw new Rejection('malformed_token', 'token header is too large');
    const { alg, kid } = knownHeaders.get(encodedHeader) ?? remember(encodedHeader, checkHeader(decodeJsonObject(encodedHeader, 'header')));
    // jku, x5u, jwk and x5c are never read: keys come only from the configured key set.
    const finish = (key: VerificationKey): Verdict => {
      if (!signatureIsValid(alg, key, signingInput, signature)) throw new Rejection('invalid_signature', undefined, () => keys.has(key));
      try {
        // Only now is the payload parsed: JSON that no key signed is never read (a 5,000-level
        // nested payload under a garbage signature costs a signature check, not a parse).
        return checkClaims(decodeJsonObject(encodedClaims, 'payload'), key);
      } catch (error) {
        // Under a good signature the claims are fixed and time only moves on, so the answer is
        // final for this key, except for a token that is not valid yet.
        const rejection = error as Rejection;
        throw rejection.reason === 'not_yet_valid' ? rejection : new Rejection(rejection.reason, rejection.detail, () => keys.has(key));
      }
    };
    const key = keys.resolve(kid, alg);
    return key instanceof Promise ? key.then(finish) : finish(key);
  };
}
