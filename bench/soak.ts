// npm run soak: mixed traffic against the built sidecar for SOAK_SECONDS (default 60; 600 for
// the real soak), sampling its resident memory every 5 s, with SOAK_TOKENS (default 100000)
// distinct tokens cycling through. Prints a markdown summary for RESULTS.md.

import { writeFileSync } from 'node:fs';
import { startIssuer } from '../test/helpers/issuer.js';
import { IMAGE_ARGS, OUT, buildSidecar, distinctTokens, rssMb, sidecarEnv, spawnPinned, stop, waitForPort, wrk } from './lib.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
const TOKENS = Number(process.env.SOAK_TOKENS ?? 100_000);
const PORTS = { upstream: 18100, sidecar: 18103, admin: 19103 };

buildSidecar();
const issuer = await startIssuer();
// ES256 keeps minting 100,000 tokens quick; the cache bound does not depend on the algorithm.
const key = await issuer.addKey('ES256', { kid: 'soak-key' });
const file = `${OUT}soak-tokens.txt`;
writeFileSync(file, (await distinctTokens(issuer, key, TOKENS, 3 * 3600)).join('\n') + '\n');

const upstream = spawnPinned(0, ['bench/targets/upstream.mjs'], { PORT: String(PORTS.upstream) });
const sidecar = spawnPinned(
  1,
  IMAGE_ARGS,
  sidecarEnv({ port: PORTS.sidecar, adminPort: PORTS.admin, issuer: issuer.issuer, upstreamUrl: `http://127.0.0.1:${PORTS.upstream}` }),
  'inherit',
);
await Promise.all([waitForPort(PORTS.upstream), waitForPort(PORTS.sidecar)]);

const samples: [number, number][] = [[0, rssMb(sidecar.pid!)]];
const started = Date.now();
const timer = setInterval(() => samples.push([Math.round((Date.now() - started) / 1000), rssMb(sidecar.pid!)]), 5000);
const result = await wrk(`http://127.0.0.1:${PORTS.sidecar}/mcp`, SECONDS, 50, { script: 'bench/mixed.lua', scriptArg: file });
clearInterval(timer);
samples.push([SECONDS, rssMb(sidecar.pid!)]);
const metrics = await (await fetch(`http://127.0.0.1:${PORTS.admin}/metrics`)).text();
const metric = (name: string) =>
  metrics
    .split('\n')
    .find((l) => l.startsWith(name))
    ?.split(' ')[1];

await stop(sidecar);
await stop(upstream);
await issuer.close();

const rss = samples.map(([, mb]) => mb);
const afterWarmup = rss.slice(Math.min(2, rss.length - 1));
const lines = [
  `Soak: ${SECONDS} s of mixed traffic (6/10 never-seen tokens cycling through ${TOKENS} distinct ones, 2/10 one reused token, 1/10 no token, 1/10 bad signature), wrk -t1 -c50.`,
  `Requests: ${result.requests} (${Math.round(result.rps)}/s, p99 ${result.p99.toFixed(2)} ms); accepted ${metric('mcp_auth_accepted_total')}; verdict cache hits ${metric('mcp_auth_verdict_cache_total{result="hit"}')}, misses ${metric('mcp_auth_verdict_cache_total{result="miss"}')}.`,
  `RSS MB: start ${rss[0]!.toFixed(0)}, peak ${Math.max(...rss).toFixed(0)}, end ${rss.at(-1)!.toFixed(0)}; after warm-up min ${Math.min(...afterWarmup).toFixed(0)} / max ${Math.max(...afterWarmup).toFixed(0)}.`,
  `Samples (s: MB): ${samples.map(([t, mb]) => `${t}: ${mb.toFixed(0)}`).join(', ')}`,
];
writeFileSync(`${OUT}soak.md`, lines.join('\n') + '\n');
process.stdout.write(lines.join('\n') + '\n');
