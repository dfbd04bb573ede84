// npm run bench:issuers: what trusting several issuers and introspecting lightweight tokens cost.
//
// 1. The cached path: one sidecar trusting one issuer and one trusting two (ISSUERS_FILE), the
//    same build, loaded side by side (lib.ts sideBySide) with one reused token each: the ratio of
//    their req/s is the inverse ratio of their CPU cost a request. Also the second issuer's own
//    reused token on the two-issuer sidecar, and never-seen tokens (each verified once).
// 2. Introspection: a sidecar with OIDC_INTROSPECTION=missing-claims in front of the test
//    issuer's introspection endpoint; for each of BENCH_TOKENS lightweight tokens (no user claim,
//    no groups) the first request, the second, and the endpoint's own round trip measured alone,
//    one request at a time; and the endpoint's calls counted (one per token, not per request).
// BENCH_ROUNDS (default 5) of BENCH_SECONDS (default 5). Prints markdown tables.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startIssuer } from '../test/helpers/issuer.js';
import {
  IMAGE_ARGS,
  OUT,
  PINNING,
  buildSidecar,
  distinctTokens,
  median,
  sideBySide,
  sidecarEnv,
  spawnPinned,
  startSidecars,
  stop,
  waitForPort,
} from './lib.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const TOKENS = Number(process.env.BENCH_TOKENS ?? 200);
const UPSTREAM_PORT = 18800;

buildSidecar();
const dir = mkdtempSync(join(tmpdir(), 'bench-issuers-'));
const a = await startIssuer({ realmPath: '/realms/a' });
const b = await startIssuer({ realmPath: '/realms/b' });
const keyA = await a.addKey('RS256', { kid: 'shared-kid' });
const keyB = await b.addKey('RS256', { kid: 'shared-kid' });
const hour = Math.floor(Date.now() / 1000) + 3600;
const tokenA = await a.mint({ exp: hour });
const tokenB = await b.mint({ exp: hour });
writeFileSync(join(dir, 'issuers.yaml'), `- issuer: ${b.issuer}\n  allowedAzp: [coder]\n`);
const freshFile = `${OUT}issuers-tokens.txt`;
writeFileSync(freshFile, (await distinctTokens(a, keyA, 40_000, 3600)).join('\n') + '\n');
void keyB;
const upstream = spawnPinned(0, ['bench/targets/upstream.mjs'], { PORT: String(UPSTREAM_PORT) });
await waitForPort(UPSTREAM_PORT);
const upstreamUrl = `http://127.0.0.1:${UPSTREAM_PORT}`;

// The third is the first again: how far two identical sidecars drift apart in the same run (the noise).
const sidecars = await startSidecars(
  [{ name: 'one issuer' }, { name: 'two issuers', env: { ISSUERS_FILE: join(dir, 'issuers.yaml') } }, { name: 'one issuer again' }],
  { port: 18801, adminPort: 19801, issuer: a.issuer, upstreamUrl },
);

const scenarios = [
  { name: 'reused token of issuer A', options: [tokenA, tokenA, tokenA] },
  { name: "reused token: A's on one issuer, B's on two", options: [tokenA, tokenB, tokenA] },
  { name: 'never-seen tokens of issuer A', options: ['fresh', 'fresh', 'fresh'] },
] as const;
const target = (i: number, option: string) =>
  option === 'fresh'
    ? sidecars[i]!.target('', { script: 'bench/fresh-tokens.lua', scriptArg: freshFile })
    : sidecars[i]!.target('/mcp', { headers: [`Authorization: Bearer ${option}`] });
for (let i = 0; i < sidecars.length; i++) await sideBySide([target(i, tokenA)], 3);
const rows = new Map<string, { ratios: number[]; control: number[]; micros: number[][] }>();
for (let round = 0; round < ROUNDS; round++) {
  for (const scenario of scenarios) {
    const results = await sideBySide(
      scenario.options.map((option, i) => target(i, option)),
      SECONDS,
    );
    for (const [i, r] of results.entries()) {
      if (r.non2xx > 0) throw new Error(`${sidecars[i]!.name}: ${scenario.name}: ${r.non2xx} of ${r.requests} not 2xx`);
    }
    const row = rows.get(scenario.name) ?? { ratios: [], control: [], micros: [[], [], []] };
    row.ratios.push(results[1]!.rps / results[0]!.rps);
    row.control.push(results[2]!.rps / results[0]!.rps);
    results.forEach((r, i) => row.micros[i]!.push(r.micros));
    rows.set(scenario.name, row);
    process.stderr.write(`${scenario.name}: ${results.map((r, i) => `${sidecars[i]!.name} ${r.rps.toFixed(0)} req/s`).join(', ')}\n`);
  }
}
for (const s of sidecars) await stop(s.child);

// Introspection: one sidecar, lightweight tokens, one request at a time.
writeFileSync(join(dir, 'secret'), a.introspection.client.secret);
a.introspection.extraClaims = { preferred_username: 'alice', groups: ['/alpha'] };
const port = 18810;
const introspecting = spawnPinned(1, IMAGE_ARGS, {
  ...sidecarEnv({ port, adminPort: 19810, issuer: a.issuer, upstreamUrl }),
  OIDC_INTROSPECTION: 'missing-claims',
  OIDC_INTROSPECTION_CLIENT_ID: a.introspection.client.id,
  OIDC_INTROSPECTION_CLIENT_SECRET_FILE: join(dir, 'secret'),
  REQUIRED_GROUPS: '/alpha',
});
await waitForPort(port);
const lightweight = await Promise.all(
  Array.from({ length: TOKENS }, () => a.mint({ exp: hour }, { omit: ['preferred_username', 'email', 'groups', 'realm_access'] })),
);
const timed = async (run: () => Promise<number>): Promise<number> => {
  const started = performance.now();
  const status = await run();
  if (status !== 200) throw new Error(`answered ${status}`);
  return (performance.now() - started) * 1000;
};
const get = (token: string) => async () => {
  const res = await request(`http://127.0.0.1:${port}/mcp`, { headers: { authorization: `Bearer ${token}` } });
  await res.body.text();
  return res.statusCode;
};
const introspect = (token: string) => async () => {
  const res = await request(a.introspection.endpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${a.introspection.client.id}:${a.introspection.client.secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token }).toString(),
  });
  await res.body.text();
  return res.statusCode;
};
// Warm-up: a full token (no introspection) and the endpoint.
for (let i = 0; i < 50; i++) await timed(get(tokenA));
for (let i = 0; i < 50; i++) await timed(introspect(tokenA));
const callsBefore = a.introspection.calls.length;
const first: number[] = [];
const second: number[] = [];
const later: number[] = [];
const endpoint: number[] = [];
const full: number[] = [];
for (const token of lightweight) {
  first.push(await timed(get(token)));
  second.push(await timed(get(token)));
  for (let i = 0; i < 3; i++) later.push(await timed(get(token)));
  full.push(await timed(get(tokenA)));
}
const calls = a.introspection.calls.length - callsBefore;
for (const token of lightweight) endpoint.push(await timed(introspect(token)));
await stop(introspecting);
await stop(upstream);
await Promise.all([a.close(), b.close()]);

const fmt = (values: number[]) => median(values).toFixed(2);
process.stdout.write(
  [
    `Node ${process.versions.node}, ${PINNING}; ${ROUNDS} rounds of ${SECONDS} s, side by side.`,
    '',
    `Load average while it ran: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}.`,
    '',
    '| scenario | req/s, two issuers × one issuer (median) | × by round | control: one issuer again × one issuer (median; by round) | CPU µs a request: one / two (median) |',
    '|---|---:|---|---|---:|',
    ...scenarios.map((scenario) => {
      const row = rows.get(scenario.name)!;
      return `| ${scenario.name} | ${median(row.ratios).toFixed(3)} | ${row.ratios.map((r) => r.toFixed(2)).join(' ')} | ${median(row.control).toFixed(3)}; ${row.control.map((r) => r.toFixed(2)).join(' ')} | ${median(row.micros[0]!).toFixed(1)} / ${median(row.micros[1]!).toFixed(1)} |`;
    }),
    '',
    `${TOKENS} lightweight tokens, one request at a time (µs, median): introspection calls made: ${calls} (${(calls / TOKENS).toFixed(2)} a token, ${TOKENS * 5} requests).`,
    '',
    '| request | µs (median) |',
    '|---|---:|',
    `| a full token, no introspection | ${fmt(full)} |`,
    `| a lightweight token's first request | ${fmt(first)} |`,
    `| the introspection endpoint alone (the round trip the first request adds) | ${fmt(endpoint)} |`,
    `| its second request | ${fmt(second)} |`,
    `| its third to fifth requests | ${fmt(later)} |`,
    `| first minus second request of the same token (median of the differences) | ${fmt(first.map((f, i) => f - second[i]!))} |`,
    '',
  ].join('\n'),
);
