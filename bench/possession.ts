// npm run bench:possession: what DPoP and token exchange cost a request.
//
// 1. In this process, microseconds a proof: the sidecar's whole proof check (auth/dpop.ts, memory
//    replay check), and its two jose parts alone (jwtVerify with the embedded key, the thumbprint);
//    beside them a bearer token the verdict cache remembers.
// 2. Side by side on core 1 (lib.ts sideBySide), two sidecars with DPOP=allow: one gets a reused
//    bearer token, the other a reused DPoP-bound token with a new ES256 proof every request
//    (signed beforehand, each used once). The ratio of their req/s is the inverse ratio of their
//    costs: what one proof check adds to a request.
// 3. Side by side, UPSTREAM_TOKEN=none against UPSTREAM_TOKEN=exchange, one reused token: after
//    the first request the exchanged token comes from the cache, so the two should cost the same
//    (and the token endpoint is called once).
// A control pair (two identical sidecars) first shows how far apart the method puts equals.
// BENCH_ROUNDS (default 5) of BENCH_SECONDS (default 5) for each pair.

import { KeyObject, createPublicKey, randomUUID, sign, verify as cryptoVerify } from 'node:crypto';
import { cpus } from 'node:os';
import { writeFileSync } from 'node:fs';
import { EmbeddedJWK, calculateJwkThumbprint, importJWK, jwtVerify } from 'jose';
import {
  OUT,
  PINNING,
  TARGET_NODE,
  bestMicros,
  buildSidecar,
  inProcessVerifier,
  median,
  sideBySide,
  spawnPinned,
  startSidecars,
  stop,
  waitForPort,
  type SideBySideTarget,
  type WrkOptions,
} from './lib.js';
import { startIssuer } from '../test/helpers/issuer.js';
import { accessTokenHash, createDpopKey, type DpopKey } from '../test/helpers/dpop.js';
import { createProofChecker } from '../src/auth/dpop.js';
import { ProofMemory } from '../src/auth/dpop-replay.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = 50;
const UPSTREAM_PORT = 18900;
const RESOURCE = 'http://mcp.bench';
const HTU = `${RESOURCE}/mcp`;
// More than a sidecar answers in BENCH_SECONDS: a proof list that ran out would send replays.
const PROOFS_A_ROUND = Number(process.env.BENCH_PROOFS ?? 60_000);

const issuer = await startIssuer();
await issuer.addKey('RS256', { kid: 'possession-bench' });
const exp = Math.floor(Date.now() / 1000) + 3600;
const key = await createDpopKey('ES256');
const bearer = await issuer.mint({ exp });
const bound = await issuer.mint({ exp, typ: 'DPoP', cnf: { jkt: key.jkt } });

/** `count` proofs of `key` for GET /mcp with `token`, signed now on the thread pool (jose would sign one at a time). */
async function proofs(dpopKey: DpopKey, token: string, count: number, htm = 'GET'): Promise<string[]> {
  const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: dpopKey.publicJwk })).toString('base64url');
  const privateKey = KeyObject.from(dpopKey.privateKey as never);
  const ath = accessTokenHash(token);
  const iat = Math.floor(Date.now() / 1000);
  return Promise.all(
    Array.from({ length: count }, () => {
      const input = `${header}.${Buffer.from(JSON.stringify({ jti: randomUUID(), htm, htu: HTU, iat, ath })).toString('base64url')}`;
      return new Promise<string>((resolve, reject) =>
        sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }, (error, signature) =>
          error ? reject(error) : resolve(`${input}.${signature.toString('base64url')}`),
        ),
      );
    }),
  );
}

// 1. In this process.
const verifier = await inProcessVerifier(issuer.issuer, { DPOP: 'allow', RESOURCE_URL: RESOURCE });
const { config, cachedVerify } = verifier;
void cachedVerify(bearer);
const N = 2000;
const passes = await Promise.all(Array.from({ length: 5 }, () => proofs(key, bound, N)));
const importedKey = await importJWK(key.publicJwk, 'ES256');
const keyObject = createPublicKey({ key: key.publicJwk as never, format: 'jwk' });
const checker = await createProofChecker(config, { replay: new ProofMemory(Date.now) });
let pass = 0;
const rawHeaders = (proof: string) => ['authorization', `DPoP ${bound}`, 'dpop', proof];
const inProcess: [string, number][] = [
  ['a bearer token the verdict cache remembers', await bestMicros(() => void cachedVerify(bearer), 1)],
  [
    "the sidecar's whole proof check (header, jose, htm, htu, ath, thumbprint, replay memory)",
    await bestMicros(async () => {
      // Each pass its own proofs: a proof seen in an earlier pass would be a replay.
      for (const proof of passes[pass++]!)
        await checker.check({ method: 'GET', url: '/mcp', rawHeaders: rawHeaders(proof) }, bound, key.jkt);
    }, N),
  ],
  [
    "jose's jwtVerify with EmbeddedJWK (the key imported from the header each time)",
    await bestMicros(async () => {
      for (const proof of passes[0]!) await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] });
    }, N),
  ],
  [
    "jose's jwtVerify with the key imported once (what the check keeps of jose per proof)",
    await bestMicros(async () => {
      for (const proof of passes[0]!) await jwtVerify(proof, importedKey, { typ: 'dpop+jwt', algorithms: ['ES256'] });
    }, N),
  ],
  [
    'node:crypto.verify of the same signature, KeyObject imported once (the floor, synchronous; not what the sidecar runs)',
    await bestMicros(() => {
      for (const proof of passes[0]!) {
        const dot = proof.lastIndexOf('.');
        cryptoVerify(
          'sha256',
          Buffer.from(proof.slice(0, dot)),
          { key: keyObject, dsaEncoding: 'ieee-p1363' },
          Buffer.from(proof.slice(dot + 1), 'base64url'),
        );
      }
    }, N),
  ],
  [
    "jose's calculateJwkThumbprint (RFC 7638, WebCrypto SHA-256)",
    await bestMicros(async () => {
      for (let i = 0; i < N; i++) await calculateJwkThumbprint(key.publicJwk, 'sha256');
    }, N),
  ],
];
// The single bearer lookup above is timed once per pass: time 2,000 for a fair number.
inProcess[0]![1] = await bestMicros(() => {
  for (let i = 0; i < N; i++) void cachedVerify(bearer);
}, N);
verifier.close();

// 2 and 3. Sidecars side by side.
buildSidecar();
const upstream = spawnPinned(0, ['bench/targets/upstream.mjs'], { PORT: String(UPSTREAM_PORT) });
await waitForPort(UPSTREAM_PORT);
const upstreamUrl = `http://127.0.0.1:${UPSTREAM_PORT}`;
const secretFile = `${OUT}possession-client-secret`;
writeFileSync(secretFile, 'bench-secret\n');
let exchanged = 0;
issuer.handleToken((_request, res) => {
  exchanged++;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ access_token: `upstream-token-${exchanged}`, token_type: 'Bearer', expires_in: 3600 }));
});

interface Pair {
  name: string;
  env: [Record<string, string>, Record<string, string>];
  options: (round: number) => Promise<[WrkOptions, WrkOptions]>;
}
const dpopEnv = { DPOP: 'allow', RESOURCE_URL: RESOURCE };
const exchangeEnv = {
  UPSTREAM_TOKEN: 'exchange',
  TOKEN_EXCHANGE_AUDIENCE: 'upstream',
  TOKEN_EXCHANGE_CLIENT_ID: 'sidecar',
  TOKEN_EXCHANGE_CLIENT_SECRET_FILE: secretFile,
};
const proofFile = (round: number) => `${OUT}possession-proofs-${round}.txt`;
const pairs: Pair[] = [
  {
    name: 'control: Bearer against Bearer (two identical sidecars, DPOP=allow)',
    env: [dpopEnv, dpopEnv],
    options: () => Promise.resolve([{ headers: [`Authorization: Bearer ${bearer}`] }, { headers: [`Authorization: Bearer ${bearer}`] }]),
  },
  {
    name: 'DPoP (a new proof each request) against Bearer (the same token reused), DPOP=allow',
    env: [dpopEnv, dpopEnv],
    options: async (round) => {
      writeFileSync(proofFile(round), `${bound}\n${(await proofs(key, bound, PROOFS_A_ROUND)).join('\n')}\n`);
      return [{ script: 'bench/dpop-proofs.lua', scriptArg: proofFile(round) }, { headers: [`Authorization: Bearer ${bearer}`] }];
    },
  },
  {
    name: 'UPSTREAM_TOKEN=exchange against none (the same token reused)',
    env: [exchangeEnv, {}],
    options: () => Promise.resolve([{ headers: [`Authorization: Bearer ${bearer}`] }, { headers: [`Authorization: Bearer ${bearer}`] }]),
  },
];

const lines: string[] = [];
for (const pair of pairs) {
  const sidecars = await startSidecars(
    pair.env.map((env, i) => ({ name: String(i), env })),
    { port: 18903, adminPort: 19903, issuer: issuer.issuer, upstreamUrl },
  );
  const targets = (options: [WrkOptions, WrkOptions]): SideBySideTarget[] => sidecars.map((s, i) => s.target('/mcp', options[i]!));
  // Warm-up, each alone: a cold sidecar costs twice as much.
  const warm = await pair.options(-1);
  for (const target of targets(warm)) await sideBySide([target], 3, CONNECTIONS);
  const ratios: number[] = [];
  const micros: [number[], number[]] = [[], []];
  const rps: [number[], number[]] = [[], []];
  for (let round = 0; round < ROUNDS; round++) {
    const [measured, against] = await sideBySide(targets(await pair.options(round)), SECONDS, CONNECTIONS);
    for (const result of [measured!, against!]) if (result.non2xx > 0) throw new Error(`${pair.name}: ${result.non2xx} responses not 2xx`);
    ratios.push(measured!.rps / against!.rps);
    micros[0].push(measured!.micros);
    micros[1].push(against!.micros);
    rps[0].push(measured!.rps);
    rps[1].push(against!.rps);
    process.stderr.write(`${pair.name}: ${measured!.rps.toFixed(0)} / ${against!.rps.toFixed(0)} req/s = ${ratios.at(-1)!.toFixed(3)}\n`);
  }
  for (const s of sidecars) await stop(s.child);
  lines.push(
    `| ${pair.name} | ${median(rps[0]).toFixed(0)} / ${median(rps[1]).toFixed(0)} | ${median(micros[0]).toFixed(1)} / ${median(micros[1]).toFixed(1)} | ${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}) |`,
  );
}
await stop(upstream);
await issuer.close();

process.stdout.write(
  [
    `Node ${execVersion()} on ${cpus()[0]?.model ?? 'unknown CPU'}, ${PINNING}; ${ROUNDS} rounds of ${SECONDS} s, ${CONNECTIONS} connections`,
    '',
    '| in this process | µs |',
    '|---|---:|',
    ...inProcess.map(([name, us]) => `| ${name} | ${us.toFixed(1)} |`),
    '',
    '| side by side (measured / against) | req/s | CPU µs a request | ratio of req/s, median (range) |',
    '|---|---:|---:|---:|',
    ...lines,
    '',
    `token endpoint calls during the exchange pair: ${exchanged}`,
    '',
  ].join('\n'),
);

function execVersion(): string {
  return TARGET_NODE === process.execPath ? process.version : TARGET_NODE;
}
