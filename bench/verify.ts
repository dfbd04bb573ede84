// npm run bench:verify: token verification alone, in this process, on 2,000 distinct RS256
// tokens: the RSA check by itself, the sidecar's verify (no cache), and jose's jwtVerify with
// the key imported once; then what a token the verdict cache remembers costs, good or bad
// (500 of each, within the 1,000 rejections it keeps). Microseconds per token, best of five passes.

import { createPublicKey, hash, verify as rsaVerify } from 'node:crypto';
import { importJWK, jwtVerify } from 'jose';
import { startIssuer } from '../test/helpers/issuer.js';
import { bestMicros, distinctTokens, inProcessVerifier } from './lib.js';

const issuer = await startIssuer();
const key = await issuer.addKey('RS256', { kid: 'verify-key' });
const tokens = await distinctTokens(issuer, key, 2_000, 3600);
const verifier = await inProcessVerifier(issuer.issuer);
const { verify, cachedVerify } = verifier;
const remembered = tokens.slice(0, 500);
const rememberedBad = remembered.map((t) => `${t.slice(0, -8)}AAAAAAAA`);
// Garbage signatures (uncached verify: every one is checked): over a normal payload, and over a
// payload nested 5,000 objects deep, which is never parsed now that the signature comes first.
const badSignature = Buffer.alloc(256, 7).toString('base64url');
const [encodedHeader] = tokens[0]!.split('.');
const garbage = tokens.slice(0, 500).map((t) => `${t.slice(0, t.lastIndexOf('.'))}.${badSignature}`);
const nestedPayload = Buffer.from(`${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`).toString('base64url');
const nestedGarbage = Array.from({ length: 500 }, () => `${encodedHeader}.${nestedPayload}.${badSignature}`);
const rejectEach = (list: string[]) => () =>
  list.forEach((t) => {
    try {
      void verify(t);
    } catch {
      // the rejection: what is measured
    }
  });
const publicKey = createPublicKey({ key: key.publicJwk as never, format: 'jwk' });
const joseKey = await importJWK(key.publicJwk, 'RS256');
const split = tokens.map((t) => {
  const dot = t.lastIndexOf('.');
  return { data: Buffer.from(t.slice(0, dot)), signature: Buffer.from(t.slice(dot + 1), 'base64url') };
});

const best = (run: () => unknown, count = tokens.length) => bestMicros(run, count);

const rows: [string, number][] = [
  [
    'node:crypto.verify on a KeyObject (the RSA-2048 check alone)',
    await best(() => split.forEach(({ data, signature }) => rsaVerify('sha256', data, publicKey, signature))),
  ],
  ["the sidecar's verify (parse, duplicate names, key lookup, signature, claims)", await best(() => tokens.forEach((t) => void verify(t)))],
  ["a garbage signature (the sidecar's verify, no cache)", await best(rejectEach(garbage), garbage.length)],
  ['a garbage signature over a payload nested 5,000 deep (no cache)', await best(rejectEach(nestedGarbage), nestedGarbage.length)],
  [
    "jose's jwtVerify with the key imported once (WebCrypto, async)",
    await best(async () => {
      for (const t of tokens) await jwtVerify(t, joseKey, { issuer: issuer.issuer });
    }),
  ],
  [
    "the token's SHA-256, the verdict cache's key",
    await best(() => remembered.forEach((t) => hash('sha256', t, 'binary')), remembered.length),
  ],
  ['a remembered token (verdict cache hit)', await best(() => remembered.forEach((t) => void cachedVerify(t)), remembered.length)],
  [
    'a remembered bad signature (cache hit, the rejection returned)',
    await best(() => rememberedBad.forEach((t) => void cachedVerify(t)), rememberedBad.length),
  ],
];
verifier.close();
await issuer.close();
process.stdout.write(`| | µs per token |\n|---|---:|\n${rows.map(([name, us]) => `| ${name} | ${us.toFixed(1)} |`).join('\n')}\n`);
