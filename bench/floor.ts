// npm run bench:floor: what one request costs in CPU, the sidecar against measuring sticks
// that do the least possible on this stack: Node answering a fixed 401 (the floor for any
// rejection), the same with the work every rejection owes (log line, counter, request id,
// the token's digest), and Fastify + undici forwarding with no authentication (the floor for any
// accepted request). CPU µs per request = the process's user + system time / requests, so it does not
// depend on how busy wrk is. Three rounds (BENCH_ROUNDS), median; prints a markdown table.

import { writeFileSync } from 'node:fs';
import {
  CPU_SCENARIOS,
  IMAGE_ARGS,
  OUT,
  buildSidecar,
  cpuPerRequest,
  median,
  sidecarEnv,
  spawnPinned,
  startCpuBench,
  stop,
  waitForPort,
  wrk,
  type CpuScenario,
} from './lib.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PORTS = { upstream: 18600, target: 18603, admin: 19603 };
buildSidecar();
const bench = await startCpuBench('floor', PORTS.upstream);
const { issuer, upstreamUrl, options } = bench;

const targets: { name: string; args: string[]; env: Record<string, string>; scenarios: CpuScenario[] }[] = [
  { name: 'floor: Node, fixed 401', args: ['bench/targets/floor-401.mjs'], env: {}, scenarios: ['no token', 'bad signature'] },
  {
    name: "floor: Node, 401 with a rejection's work",
    args: ['bench/targets/floor-401-spec.mjs'],
    env: {},
    scenarios: ['no token', 'bad signature'],
  },
  { name: 'floor: Fastify + undici, no auth', args: ['bench/targets/floor-forwarder.mjs'], env: {}, scenarios: ['reused token'] },
  { name: 'bare @fastify/http-proxy', args: ['bench/targets/bare-proxy.mjs'], env: {}, scenarios: ['reused token'] },
  {
    name: 'sidecar',
    args: IMAGE_ARGS,
    scenarios: CPU_SCENARIOS,
    env: sidecarEnv({ port: PORTS.target, adminPort: PORTS.admin, issuer: issuer.issuer, upstreamUrl }),
  },
];

const results = new Map<string, { rps: number[]; micros: number[] }>();
for (let round = 0; round < ROUNDS; round++) {
  for (const target of targets) {
    const child = spawnPinned(1, target.args, { PORT: String(PORTS.target), UPSTREAM_URL: upstreamUrl, ...target.env }, 'inherit');
    await waitForPort(PORTS.target);
    const url = `http://127.0.0.1:${PORTS.target}`;
    await wrk(`${url}/mcp`, 2, 50, options['reused token']); // warm-up
    for (const scenario of target.scenarios) {
      const { rps, micros } = await cpuPerRequest(target.name, child.pid!, url, scenario, options[scenario], SECONDS);
      const row = `${target.name}: ${scenario}`;
      const entry = results.get(row) ?? { rps: [], micros: [] };
      entry.rps.push(rps);
      entry.micros.push(micros);
      results.set(row, entry);
      process.stderr.write(`${row}: ${Math.round(rps)} req/s, ${micros.toFixed(1)} µs CPU a request\n`);
    }
    await stop(child);
  }
}
await bench.close();

const lines = [
  '| target: scenario | req/s | CPU µs a request |',
  '|---|---:|---:|',
  ...[...results].map(([row, r]) => `| ${row} | ${Math.round(median(r.rps))} | ${median(r.micros).toFixed(1)} |`),
];
writeFileSync(`${OUT}floor.md`, lines.join('\n') + '\n');
process.stdout.write(lines.join('\n') + '\n');
