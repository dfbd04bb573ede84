// Token verification: the documented checks in the documented order, each failure a Rejection with its reason.
// The payload is parsed only after the signature verifies.
// The signature is checked with node:crypto on a key imported once (see keyset.ts): the
// whole check is synchronous unless an unknown kid sends us to the issuer.

import { constants, verify as verifySignatureBytes } from 'node:crypto';
import type { Config, TrustedIssuer } from '../config/config.js';
import { Rejection } from '../lib/errors.js';
import type { KeySource, VerificationKey } from './keyset.js';
import { hasDuplicateKeys } from '../lib/json-text.js';
import type { Introspector } from './introspection.js';

export interface Identity {
  readonly user: string;
  /** The issuer that vouched for the token (its `iss`): X-Verified-Issuer, the policy's `token.iss`; an MCP session belongs to an issuer and subject (mcp/sessions.ts). */
  readonly issuer?: string;
  readonly subject: string | undefined;
  readonly email: string | undefined;
  readonly groups: readonly string[] | undefined;
  /** Realm roles (`realm_access.roles`): kept only when a tool policy is configured (its CEL `roles`). */
  readonly roles?: readonly string[];
  /** The claims less the per-token ones (PER_TOKEN_CLAIMS): kept only when a tool policy is configured (its CEL `jwt`). */
  readonly claims?: Readonly<Record<string, unknown>>;
  /** The token's `scope`, split at spaces: kept only when a tool policy is configured (rules' `scopes:`, CEL `token.scopes`). */
  readonly scopes?: readonly string[];
  /**
   * The RFC 7638 thumbprint of the key the token is bound to (`cnf.jkt`, RFC 9449): such a token
   * is accepted only with the DPoP scheme and a proof signed by that key, checked every request.
   */
  readonly jkt?: string;
}

export interface Verdict {
  readonly identity: Identity;
  /** The key that verified the signature; undefined for an opaque token that introspection vouched for. */
  readonly key: VerificationKey | undefined;
  /** When the token stops being valid: `exp` plus the clock tolerance, in ms. */
  readonly validUntilMs: number;
}

export type VerifierConfig = Pick<Config, 'algorithms' | 'clockToleranceSeconds' | 'policyFile' | 'forwardUnverifiedEmail' | 'dpop'>;

/** One trusted issuer as the verifier uses it: its settings, its own key set, and its introspection when configured. */
export interface IssuerKeys {
  readonly issuer: TrustedIssuer;
  readonly keys: KeySource;
  readonly introspector?: Introspector;
}

/** Verification: a Verdict, or a Rejection thrown. */
export type Verify = (token: string) => Verdict | Promise<Verdict>;

/**
 * Verification that returns its Rejection instead of throwing it (the verdict cache's, see
 * verdict-cache.ts): a remembered rejection is the answer to most hostile requests, and a throw
 * cost more than looking it up. Anything else thrown is a bug, and still thrown.
 */
export type VerifyToResult = (token: string) => Verdict | Rejection | Promise<Verdict | Rejection>;

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

/**
 * How long a refusal of a token's form or header stands: for good, whatever the key set does (a
 * token never changes), so that the verdict cache may remember it like a bad signature.
 */
const FOR_GOOD = () => true;

/** The three parts of a compact JWS, still encoded; never trusts their contents. */
function splitCompact(token: string): { encodedHeader: string; encodedClaims: string; signingInput: Buffer; signature: Buffer } {
  // One pass over the token for the common case; the slow path only words the rejection.
  if (!COMPACT_JWS.test(token)) {
    // eslint-disable-next-line no-control-regex -- control characters are what is looked for
    if (/[\x00-\x20\xa0]/.test(token)) throw new Rejection('malformed_token', 'token contains white space or control characters', FOR_GOOD);
    const parts = token.split('.').length;
    if (parts === 5) throw new Rejection('malformed_token', 'encrypted tokens (JWE) are not accepted', FOR_GOOD);
    if (parts !== 3) throw new Rejection('malformed_token', 'token is not a compact JWS of three parts', FOR_GOOD);
    throw new Rejection('malformed_token', 'token parts are not base64url', FOR_GOOD);
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
    throw new Rejection('malformed_token', `token ${what} is not JSON`, FOR_GOOD);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Rejection('malformed_token', `token ${what} is not a JSON object`, FOR_GOOD);
  }
  // RFC 7519 lets a parser keep the last of duplicate names; two parsers disagreeing on which
  // `sub` counts is how confusion attacks start, so a duplicate is refused outright.
  if (hasDuplicateKeys(text, value)) throw new Rejection('malformed_token', `token ${what} has duplicate member names`, FOR_GOOD);
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

/** The answer stands as long as the configuration does: it names no key and no time. */
const ALWAYS = (): boolean => true;
// An opaque token as RFC 6750 writes one (b64token), for an issuer that introspects every token.
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Whether a verdict's key is still in the key set of the issuer that holds it. */
export function keyHolder(issuers: readonly IssuerKeys[]): Pick<KeySource, 'has'> {
  if (issuers.length === 1) return issuers[0]!.keys;
  const byIssuer = new Map(issuers.map((i) => [i.issuer.issuer, i.keys]));
  return { has: (key) => key.issuer !== undefined && byIssuer.get(key.issuer)?.has(key) === true };
}

/** The claim checks and identity of one issuer: every issuer keeps its own settings and its own identities. */
function issuerChecks(config: VerifierConfig, { issuer: entry, keys, introspector }: IssuerKeys, now: () => number) {
  const audiences = new Set(entry.audiences);
  const allowedAzp = new Set(entry.allowedAzp);
  const toleranceMs = config.clockToleranceSeconds * 1000;
  // With DPoP on, Keycloak's DPoP-bound access tokens (`typ: DPoP`) are access tokens too.
  const dpopType = config.dpop !== 'off';
  const expectedType = dpopType ? `${entry.tokenType} or DPoP` : entry.tokenType;
  const keepClaims = config.policyFile !== undefined;
  // The claims whose absence sends a token to introspection (`when: missing-claims`): the user
  // claim; `groups` when required groups or the tool policy read them; `realm_access` when
  // required roles do (a user without realm roles has none, so a policy alone does not ask).
  const needsGroups = keepClaims || entry.requiredGroups.length > 0;
  const needsRoles = entry.requiredRoles.length > 0;
  const lacksNeededClaim = (claims: Claims): boolean =>
    claims[entry.userClaim] === undefined ||
    (needsGroups && claims.groups === undefined) ||
    (needsRoles && claims.realm_access === undefined);

  const identities = new Map<string, Identity>();
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
      // Defined, not assigned: a claim named __proto__ stays a claim the rules see, not a prototype
      // they read through (CEL cannot take an object without one).
      claims = Object.fromEntries(Object.entries(all).filter(([name]) => !PER_TOKEN_CLAIMS.has(name)));
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
    const issuer = entry.issuer;
    const identity: Identity = {
      user,
      issuer,
      subject,
      email,
      groups,
      ...(claims === undefined
        ? {}
        : {
            roles: stringList((all.realm_access as { roles?: unknown } | undefined)?.roles),
            claims,
            scopes: typeof all.scope === 'string' ? all.scope.split(' ').filter((s) => s !== '') : [],
          }),
      ...(jkt === undefined ? {} : { jkt }),
    };
    if (json !== undefined) claimsJson.set(identity, json);
    identities.set(id, identity);
    return identity;
  }

  /** The identity in the claims, and the issuer's required groups or roles. */
  function identify(claims: Claims, key: VerificationKey | undefined, exp: number, jkt: string | undefined): Verdict {
    const userValue = claims[entry.userClaim];
    if (userValue === undefined || userValue === '') {
      throw new Rejection('missing_claim', `token has no ${entry.userClaim} claim`);
    }
    // An address Keycloak never verified is the user's own typing: not forwarded as verified.
    const email = forwardable(claims, 'email');
    const identity = sharedIdentity(
      forwardable(claims, entry.userClaim)!,
      forwardable(claims, 'sub'),
      claims.email_verified === true || config.forwardUnverifiedEmail ? email : undefined,
      forwardableGroups(claims),
      jkt,
      claims,
    );

    if (entry.requiredGroups.length > 0 || entry.requiredRoles.length > 0) {
      const groups = new Set(stringList(claims.groups));
      const roles = new Set(stringList((claims.realm_access as { roles?: unknown } | undefined)?.roles));
      const granted = entry.requiredGroups.some((g) => groups.has(g)) || entry.requiredRoles.some((r) => roles.has(r));
      if (!granted) throw new Rejection('forbidden');
    }
    return { identity, key, validUntilMs: exp * 1000 + toleranceMs };
  }

  /** The token's claims, then (when configured and needed) what the issuer's introspection adds. */
  function checkClaims(claims: Claims, key: VerificationKey | undefined, token: string): Verdict | Promise<Verdict> {
    if (claims.iss !== entry.issuer) throw new Rejection('wrong_issuer');

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
    if (entry.tokenType !== '' && claims.typ !== entry.tokenType && !(dpopType && claims.typ === 'DPoP' && jkt !== undefined)) {
      throw new Rejection('wrong_token_type', `token typ must be ${expectedType}`);
    }
    if (introspector !== undefined && key !== undefined && (introspector.when === 'always' || lacksNeededClaim(claims))) {
      return introspector.introspect(token, exp * 1000).then((extra) => identify(merged(claims, extra), key, exp, jkt));
    }
    return identify(claims, key, exp, jkt);
  }

  /**
   * A signed token's claims over what introspection said of it: the token's own claims win, the
   * answer fills in what the token leaves out. An answer about another subject or issuer is refused.
   */
  function merged(claims: Claims, extra: Claims): Claims {
    const differs = (name: string) => extra[name] !== undefined && claims[name] !== undefined && extra[name] !== claims[name];
    if (differs('sub') || differs('iss')) {
      throw new Rejection('invalid_claim', 'the introspection answer names another subject or issuer than the token');
    }
    return { ...extra, ...claims };
  }

  /** An opaque token: everything comes from introspection (the issuer's answer stands in for a signature). */
  function checkOpaque(token: string): Promise<Verdict> {
    return introspector!.introspect(token, undefined).then((claims) => {
      if (claims.iss !== undefined && claims.iss !== entry.issuer) throw new Rejection('wrong_issuer');
      return checkClaims({ ...claims, iss: entry.issuer }, undefined, token);
    });
  }

  return { entry, keys, checkClaims, checkOpaque, introspects: introspector !== undefined };
}

/** Names the issuer on a rejection made for one of its tokens (the per-issuer metric). */
function ofIssuer(rejection: Rejection, issuer: string): Rejection {
  rejection.issuer = issuer;
  return rejection;
}

export function createVerifier(config: VerifierConfig, issuers: readonly IssuerKeys[], now: () => number = Date.now): Verify {
  const algorithms = new Set<string>(config.algorithms);
  const checks = issuers.map((i) => issuerChecks(config, i, now));
  const byIssuer = new Map(checks.map((c) => [c.entry.issuer, c]));
  const single = checks.length === 1 ? checks[0] : undefined;
  // An opaque token names no issuer: it goes to the first issuer that introspects every token, and to no other.
  const opaque = checks.find((c) => c.introspects && c.entry.introspection?.when === 'always');

  /** The header's parameters, or why they are refused (the documented order: structure and alg, key, signature, then claims). */
  function checkHeader(header: Claims): CheckedHeader {
    const alg = header.alg;
    if (typeof alg !== 'string' || !algorithms.has(alg)) throw new Rejection('unsupported_algorithm', undefined, FOR_GOOD);
    if (header.crit !== undefined) throw new Rejection('malformed_token', 'critical header parameters are not supported', FOR_GOOD);
    if (header.b64 !== undefined) throw new Rejection('malformed_token', 'unencoded payloads are not supported', FOR_GOOD);
    const kid = header.kid;
    if (kid !== undefined && (typeof kid !== 'string' || kid.length > 256)) {
      throw new Rejection('malformed_token', 'kid header is not a short string', FOR_GOOD);
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
    if (opaque !== undefined && !COMPACT_JWS.test(token) && B64TOKEN.test(token)) {
      const parts = token.split('.').length;
      if (parts !== 3 && parts !== 5) {
        return opaque.checkOpaque(token).catch((error: unknown) => Promise.reject(ofIssuer(error as Rejection, opaque.entry.issuer)));
      }
    }
    const { encodedHeader, encodedClaims, signingInput, signature } = splitCompact(token);
    if (encodedHeader.length > MAX_ENCODED_HEADER) throw new Rejection('malformed_token', 'token header is too large', FOR_GOOD);
    const { alg, kid } = knownHeaders.get(encodedHeader) ?? remember(encodedHeader, checkHeader(decodeJsonObject(encodedHeader, 'header')));
    // With one issuer the payload is parsed only after the signature verifies (JSON that no key
    // signed is never read). With several, its `iss` picks the issuer, and so the key set, before
    // any key is looked up: a token never meets another issuer's keys (kids may repeat across
    // realms), and an issuer not trusted costs no fetch.
    let issuer = single;
    let claims: Claims | undefined;
    if (issuer === undefined) {
      claims = decodeJsonObject(encodedClaims, 'payload');
      issuer = typeof claims.iss === 'string' ? byIssuer.get(claims.iss) : undefined;
      if (issuer === undefined) throw new Rejection('wrong_issuer', undefined, ALWAYS);
    }
    const { entry, keys } = issuer;
    const checkClaims = issuer.checkClaims;
    // Under a good signature the claims are fixed and time only moves on, so the answer is final
    // for this key, except for a token that is not valid yet or an introspection not answered.
    const settled = (error: unknown, key: VerificationKey): Rejection => {
      const rejection = error as Rejection;
      return ofIssuer(
        rejection.reason === 'not_yet_valid' || rejection.reason === 'introspection_unavailable'
          ? rejection
          : new Rejection(rejection.reason, rejection.detail, () => keys.has(key)),
        entry.issuer,
      );
    };
    // jku, x5u, jwk and x5c are never read: keys come only from the issuer's own key set.
    const finish = (key: VerificationKey): Verdict | Promise<Verdict> => {
      if (!signatureIsValid(alg, key, signingInput, signature)) {
        throw ofIssuer(new Rejection('invalid_signature', undefined, () => keys.has(key)), entry.issuer);
      }
      let result;
      try {
        // Only now is the payload parsed (with one issuer): a 5,000-level nested payload under a
        // garbage signature costs a signature check, not a parse.
        result = checkClaims(claims ?? decodeJsonObject(encodedClaims, 'payload'), key, token);
      } catch (error) {
        throw settled(error, key);
      }
      return result instanceof Promise ? result.catch((error: unknown) => Promise.reject(settled(error, key))) : result;
    };
    let key;
    try {
      key = keys.resolve(kid, alg);
    } catch (error) {
      throw ofIssuer(error as Rejection, entry.issuer);
    }
    return key instanceof Promise
      ? key.then(finish, (error: unknown) => Promise.reject(ofIssuer(error as Rejection, entry.issuer)))
      : finish(key);
  };
}
