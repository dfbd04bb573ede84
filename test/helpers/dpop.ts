// A DPoP client's side (RFC 9449), made with jose: a key pair, its RFC 7638 thumbprint (the
// `cnf.jkt` of tokens bound to it) and proofs for a request, each part overridable so that tests
// can make every kind of bad proof.

import { createHash, randomUUID } from 'node:crypto';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';

export interface DpopKey {
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
  /** The key's SHA-256 thumbprint, base64url: what `cnf.jkt` holds. */
  jkt: string;
}

export interface ProofOptions {
  htm: string;
  htu: string;
  /** The access token the proof goes with (sets `ath`). */
  token?: string;
  nonce?: string;
  /** Seconds since the epoch; default now. */
  iat?: number;
  jti?: string;
  /** Protected header parameters replacing or added to the usual ones. */
  header?: Record<string, unknown>;
  /** Claims replacing or added to the usual ones (undefined removes one). */
  claims?: Record<string, unknown>;
  /** Sign with this key instead (the header still names `key`'s jwk unless `header.jwk` says otherwise). */
  signWith?: CryptoKey;
}

export async function createDpopKey(alg = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const publicJwk = await exportJWK(publicKey);
  return { alg, privateKey, publicJwk, jkt: await calculateJwkThumbprint(publicJwk, 'sha256') };
}

/** base64url(SHA-256(token)): a proof's `ath`. */
export const accessTokenHash = (token: string) => createHash('sha256').update(token).digest('base64url');

export async function createProof(key: DpopKey, options: ProofOptions): Promise<string> {
  const claims: Record<string, unknown> = {
    jti: options.jti ?? randomUUID(),
    htm: options.htm,
    htu: options.htu,
    iat: options.iat ?? Math.floor(Date.now() / 1000),
    ...(options.token === undefined ? {} : { ath: accessTokenHash(options.token) }),
    ...(options.nonce === undefined ? {} : { nonce: options.nonce }),
    ...options.claims,
  };
  for (const name of Object.keys(claims)) if (claims[name] === undefined) delete claims[name];
  return new SignJWT(claims)
    .setProtectedHeader({ typ: 'dpop+jwt', alg: key.alg, jwk: key.publicJwk, ...options.header } as never)
    .sign(options.signWith ?? key.privateKey);
}
