// npm run bench:tracing: what traces cost. The same build of the sidecar three times, loaded side
// by side on core 1 (lib.ts sideBySide): without an OTLP endpoint (twice: the control pair shows
// how far apart the method puts equals), and exporting every request's spans (the default
// sampler, no client trace context: every request is a sampled root) to an OTLP sink on core 0
// that answers at once. Scenarios: bench:ab's (reused token, never-seen tokens, no token, bad
// signature, a 1 KB POST that is not JSON) and bench:mcp's tools/call answered as JSON and as
// an event stream (BENCH_SCENARIOS: a comma list of names to run only those). BENCH_ROUNDS
// (default 5) of BENCH_SECONDS (default 5) a scenario. Goal:
// tracing on >= 0.85x of off; its resident memory under load within 15 MiB of off. A run in
// which the traced sidecar dropped spans fails: dropping is cheaper than exporting.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import {
  CPU_SCENARIOS,
  PINNING,
  TARGET_NODE,
  buildSidecar,
  median,
  sideBySide,
  sideBySideRound,
  spawnPinned,
  startCpuBench,
  startSidecars,
  stop,
  waitForPort,
  type RoundRows,
  type WrkOptions,
} from './lib.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const [UPSTREAM_PORT, MCP_UPSTREAM_PORT, SINK_PORT] = [18900, 18901, 18902];
const GOAL = 0.85;
const RSS_GOAL_MB = 15;

buildSidecar();
const bench = await startCpuBench('tracing', UPSTREAM_PORT);
const mcpUpstream = spawnPinned(0, ['bench/targets/mcp-upstream.mjs'], { PORT: String(MCP_UPSTREAM_PORT) });
const sink = spawnPinned(0, ['bench/targets/otlp-sink.mjs'], { PORT: String(SINK_PORT) });
await Promise.all([waitForPort(MCP_UPSTREAM_PORT), waitForPort(SINK_PORT)]);
const sinkUrl = `http://127.0.0.1:${SINK_PORT}`;
const token = /Bearer (\S+)/.exec(bench.options['reused token'].headers![0]!)![1]!;

const configurations: Record<string, Record<string, string>> = {
  off: {},
  'off (twin)': {},
  on: { OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl, OTEL_SERVICE_NAME: 'bench' },
};
const names = Object.keys(configurations);

interface Scenario {
  name: string;
  upstream: number;
  path: string;
  options: WrkOptions;
  accepted: boolean;
}
const mcpCall: WrkOptions = { headers: [`Authorization: Bearer ${token}`], script: 'bench/mcp-call.lua', scriptArg: 'application/json' };
const only = process.env.BENCH_SCENARIOS?.split(',');
const allScenarios: Scenario[] = [
  ...CPU_SCENARIOS.map((name) => ({
    name,
    upstream: UPSTREAM_PORT,
    path: name === 'never-seen tokens' ? '' : '/mcp',
    options: bench.options[name],
    accepted: name === 'reused token' || name === 'never-seen tokens',
  })),
  {
    name: 'POST, 1 KB not JSON',
    upstream: UPSTREAM_PORT,
    path: '/mcp',
    options: { ...bench.options['reused token'], script: 'bench/mcp-call.lua', scriptArg: 'text/plain' },
    accepted: true,
  },
  { name: 'tools/call, JSON', upstream: MCP_UPSTREAM_PORT, path: '/mcp', options: mcpCall, accepted: true },
  { name: 'tools/call, SSE', upstream: MCP_UPSTREAM_PORT, path: '/mcp-sse', options: mcpCall, accepted: true },
];
const scenarios = allScenarios.filter((scenario) => only === undefined || only.includes(scenario.name));

function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)![1]) / 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

async function dropped(adminPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  return [...text.matchAll(/^mcp_auth_trace_spans_dropped_total\{[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

const rows: RoundRows = new Map();
const rss = new Map<string, number[]>();
// Each upstream gets three new sidecars with the same history.
for (const upstream of [UPSTREAM_PORT, MCP_UPSTREAM_PORT]) {
  const mine = scenarios.filter((scenario) => scenario.upstream === upstream);
  if (mine.length === 0) continue;
  const sidecars = await startSidecars(
    names.map((name) => ({ name, env: configurations[name] })),
    { port: 18903, adminPort: 19903, issuer: bench.issuer.issuer, upstreamUrl: `http://127.0.0.1:${upstream}` },
  );
  const targets = (scenario: Scenario) => sidecars.map((sidecar) => sidecar.target(scenario.path, scenario.options));
  // Warm-up, each alone and alike: the first scenario, 3 s.
  for (const target of targets(mine[0]!)) await sideBySide([target], 3);
  for (let round = 0; round < ROUNDS; round++) {
    for (const scenario of mine) {
      await sideBySideRound(rows, scenario, targets(scenario), SECONDS);
      for (const { name, child } of sidecars) rss.set(name, [...(rss.get(name) ?? []), memory(child.pid!).rss]);
    }
  }
  const traced = sidecars.find((sidecar) => sidecar.name === 'on')!;
  const lost = await dropped(traced.adminPort);
  if (lost > 0) throw new Error(`the traced sidecar dropped ${lost} spans: what it did is not what is measured`);
  for (const sidecar of sidecars) await stop(sidecar.child);
}
const received = (await (await fetch(`${sinkUrl}/count`)).json()) as { exports: number; bytes: number };
if (received.exports === 0) throw new Error('the sink received no spans');
await stop(sink);
await stop(mcpUpstream);
await bench.close();

const peak = (name: string) => Math.max(...rss.get(name)!);
const lines = [
  `| scenario: sidecar | req/s × off (median of rounds) | goal | × by round | CPU µs a request, side by side (median) |`,
  '|---|---:|---|---|---:|',
  ...scenarios.flatMap((scenario) =>
    names.map((name) => {
      const row = rows.get(`${scenario.name}: ${name}`)!;
      const ratio = median(row.ratios);
      const goal = name === 'on' ? `${GOAL} ${ratio >= GOAL ? 'met' : '**not met**'}` : '';
      return `| ${scenario.name}: ${name} | ${ratio.toFixed(3)} | ${goal} | ${row.ratios.map((r) => r.toFixed(2)).join(' ')} | ${median(row.micros).toFixed(1)} |`;
    }),
  ),
  '',
  `Resident memory under load (largest VmRSS read after a round): off ${peak('off').toFixed(0)} MiB, off (twin) ${peak('off (twin)').toFixed(0)} MiB, ` +
    `on ${peak('on').toFixed(0)} MiB: on − off ${(peak('on') - peak('off')).toFixed(1)} MiB (goal ≤ ${RSS_GOAL_MB}: ` +
    `${peak('on') - peak('off') <= RSS_GOAL_MB ? 'met' : '**not met**'}). The sink took ${received.exports} exports, ${(received.bytes / 1048576).toFixed(0)} MiB; no span dropped.`,
  '',
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${execFileSync(TARGET_NODE, ['--version'], { encoding: 'utf8' }).trim()}, three wrk -t1 -c50 -d${SECONDS}s at once, ${ROUNDS} rounds, ${PINNING} (the three sidecars on core 1, sharing it; the OTLP sink on core 0).`,
];
console.log(lines.join('\n'));
