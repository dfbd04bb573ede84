// npm run bench:mcp: what reading MCP costs. tools/call POSTs with a 1 KB body, answered as JSON
// and as an event stream, through the sidecar with AUDIT=on and with AUDIT=off, taking turns
// every round (BENCH_ROUNDS, default 5, of BENCH_SECONDS, default 5): requests per second and
// CPU µs a request of the sidecar. Goal (issue 18): audit on >= 0.9x the req/s of AUDIT=off.

import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { IMAGE_ARGS, PINNING, TARGET_NODE, buildSidecar, median, sidecarEnv, spawnPinned, stop, waitForPort, wrk } from './lib.js';
import { startIssuer } from '../test/helpers/issuer.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = 50;
const PORTS = { upstream: 18800, target: 18803, admin: 19803 };
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
const cpuSeconds = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
};

buildSidecar();
const issuer = await startIssuer();
await issuer.addKey('RS256', { kid: 'mcp-bench' });
const token = await issuer.mint({ exp: Math.floor(Date.now() / 1000) + 3600 });
const upstream = spawnPinned(0, ['bench/targets/mcp-upstream.mjs'], { PORT: String(PORTS.upstream) });
await waitForPort(PORTS.upstream);
const upstreamUrl = `http://127.0.0.1:${PORTS.upstream}`;

// `not read`: the same POSTs as text/plain, which the sidecar forwards unread, as it forwarded every body before issue 18.
const modes = [
  { name: 'AUDIT=on', env: { AUDIT: 'on' }, type: 'application/json' },
  { name: 'AUDIT=off', env: { AUDIT: 'off' }, type: 'application/json' },
  { name: 'not read', env: { AUDIT: 'on' }, type: 'text/plain' },
];
const paths = [{ name: 'JSON', path: '/mcp' }, { name: 'SSE', path: '/mcp-sse' }];
const results = new Map<string, { rps: number[]; micros: number[] }>();

for (let round = 0; round < ROUNDS; round++) {
  for (const mode of round % 2 === 0 ? modes : [...modes].reverse()) {
    const child = spawnPinned(1, IMAGE_ARGS, { ...sidecarEnv({ port: PORTS.target, adminPort: PORTS.admin, issuer: issuer.issuer, upstreamUrl }), ...mode.env });
    await waitForPort(PORTS.target);
    const url = `http://127.0.0.1:${PORTS.target}`;
    const options = { headers: [`Authorization: Bearer ${token}`], script: 'bench/mcp-call.lua', scriptArg: mode.type };
    await wrk(`${url}/mcp`, 2, CONNECTIONS, options); // warm-up
    for (const { name, path } of paths) {
      const before = cpuSeconds(child.pid!);
      const result = await wrk(`${url}${path}`, SECONDS, CONNECTIONS, options);
      const micros = ((cpuSeconds(child.pid!) - before) * 1e6) / result.requests;
      if (result.non2xx > 0) throw new Error(`${mode.name} ${name}: ${result.non2xx} responses not 2xx`);
      const row = `${name}: ${mode.name}`;
      const entry = results.get(row) ?? { rps: [], micros: [] };
      entry.rps.push(result.rps);
      entry.micros.push(micros);
      results.set(row, entry);
      process.stderr.write(`${row}: ${result.rps.toFixed(0)} req/s, ${micros.toFixed(1)} µs CPU a request\n`);
    }
    await stop(child);
  }
}
await stop(upstream);
await issuer.close();

const lines = [
  '| tools/call answered as: sidecar | req/s (median) | × AUDIT=off | CPU µs a request (median) | CPU µs by round | req/s by round |',
  '|---|---:|---:|---:|---|---|',
  ...paths.flatMap(({ name }) => modes.map((mode) => {
    const entry = results.get(`${name}: ${mode.name}`)!;
    const off = median(results.get(`${name}: AUDIT=off`)!.rps);
    return `| ${name}: ${mode.name} | ${median(entry.rps).toFixed(0)} | ${(median(entry.rps) / off).toFixed(2)} | ${median(entry.micros).toFixed(1)} | ${entry.micros.map((m) => m.toFixed(0)).join(' ')} | ${entry.rps.map((r) => r.toFixed(0)).join(' ')} |`;
  })),
  '',
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${execFileSync(TARGET_NODE, ['--version'], { encoding: 'utf8' }).trim()}, wrk -t1 -c${CONNECTIONS} -d${SECONDS}s, ${ROUNDS} rounds, ${PINNING}; audit lines go to the sidecar's stdout (/dev/null here).`,
];
console.log(lines.join('\n'));
