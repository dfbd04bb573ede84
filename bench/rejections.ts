// npm run bench:rejections: what refusing costs against forwarding, side by side. The bare
// @fastify/http-proxy forwarding a request (the reference, 1.00), the sidecar and oauth2-proxy
// (when its binary is found) are all pinned to core 1 and loaded at the same moments, one wrk
// each (lib.ts sideBySide): a slower VM or a busy neighbour slows them alike, so the ratio of
// their rates is the inverse ratio of their CPU costs. Each of the sidecar's and oauth2-proxy's
// scenarios (no token, bad signature, reused token, never-seen tokens) is one side-by-side run
// against the bare proxy; BENCH_ROUNDS (default 3, median) of BENCH_SECONDS (default 5), in
// plain HTTP and with TLS on every proxy port (BENCH_TLS: both, off, only). wrk keeps its 50
// connections, so a proxy that closes one after a refusal pays the new handshake.
// Prints a markdown table for RESULTS.md with the load average.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { createCa } from '../test/helpers/certificates.js';
import {
  buildSidecar,
  CPU_SCENARIOS,
  IMAGE_ARGS,
  OAUTH2_PROXY,
  OUT,
  median,
  oauth2ProxyArgs,
  pinned,
  sideBySide,
  sidecarEnv,
  spawnPinned,
  startCpuBench,
  stop,
  waitForPort,
  type CpuScenario,
  type Tls,
} from './lib.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TLS_CHOICES: Record<string, boolean[]> = { both: [false, true], off: [false], only: [true] };
const TLS_MODES = TLS_CHOICES[process.env.BENCH_TLS ?? 'both'] ?? [];
if (TLS_MODES.length === 0) throw new Error('BENCH_TLS is both, off or only');
const PORTS = { upstream: 18800, bare: 18801, sidecar: 18803, 'oauth2-proxy': 18805 };
// Refusals first: they are what this bench is about.
const SCENARIOS: CpuScenario[] = ['no token', 'bad signature', ...CPU_SCENARIOS.filter((s) => s !== 'no token' && s !== 'bad signature')];

buildSidecar();
const bench = await startCpuBench('rejections', PORTS.upstream);
const { issuer, upstreamUrl, options } = bench;
const ca = createCa('openssl');
const leaf = ca.issue('01');
const tls: Tls = { certFile: `${OUT}rejections-cert.pem`, keyFile: `${OUT}rejections-key.pem` };
writeFileSync(tls.certFile, leaf.cert);
writeFileSync(tls.keyFile, leaf.key);
ca.close();

type Name = 'bare' | 'sidecar' | 'oauth2-proxy';
const names: Name[] = OAUTH2_PROXY === undefined ? ['bare', 'sidecar'] : ['bare', 'sidecar', 'oauth2-proxy'];
if (OAUTH2_PROXY === undefined)
  process.stderr.write('oauth2-proxy not found (go install github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6): measured without it\n');

function start(name: Name, withTls: boolean): ChildProcess {
  const tlsEnv: Record<string, string> = withTls ? { TLS_CERT_FILE: tls.certFile, TLS_KEY_FILE: tls.keyFile } : {};
  if (name === 'bare')
    return spawnPinned(1, ['bench/targets/bare-proxy.mjs'], { PORT: String(PORTS.bare), UPSTREAM_URL: upstreamUrl, ...tlsEnv });
  if (name === 'sidecar')
    return spawnPinned(1, IMAGE_ARGS, {
      ...sidecarEnv({ port: PORTS.sidecar, adminPort: PORTS.sidecar + 1000, issuer: issuer.issuer, upstreamUrl }),
      ...tlsEnv,
    });
  const [command, args] = pinned(
    1,
    OAUTH2_PROXY!,
    oauth2ProxyArgs(PORTS['oauth2-proxy'], issuer.issuer, upstreamUrl, withTls ? tls : undefined),
  );
  return spawn(command, args, { stdio: 'ignore' });
}

/** VmHWM of a process, MiB. */
function peakMb(pid: number): number {
  return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

// row -> { x bare by rate, x bare by CPU, x oauth2-proxy by rate, req/s, CPU µs }
const rows = new Map<string, { rate: number[]; cpu: number[]; peer: number[]; rps: number[]; micros: number[] }>();
const peaks = new Map<string, number[]>();
const loads: number[] = [];
for (const withTls of TLS_MODES) {
  const scheme = withTls ? 'https' : 'http';
  const children = names.map((name) => ({ name, child: start(name, withTls) }));
  await Promise.all(names.map((name) => waitForPort(PORTS[name])));
  const target = (name: Name, scenario: CpuScenario, pid: number) => ({
    name,
    // The never-seen script names its own path.
    url: `${scheme}://127.0.0.1:${PORTS[name]}${scenario === 'never-seen tokens' ? '' : '/mcp'}`,
    pid,
    options: options[scenario],
  });
  // Warm-up, all at once: forwarding, then a refusal.
  for (const scenario of ['reused token', 'no token'] as const)
    await sideBySide(
      children.map(({ name, child }) => target(name, name === 'bare' ? 'reused token' : scenario, child.pid!)),
      3,
    );
  for (let round = 0; round < ROUNDS; round++) {
    for (const scenario of SCENARIOS) {
      const targets = children.map(({ name, child }) => target(name, name === 'bare' ? 'reused token' : scenario, child.pid!));
      const results = await sideBySide(targets, SECONDS);
      loads.push(loadavg()[0]!);
      const accepted = scenario === 'reused token' || scenario === 'never-seen tokens';
      results.forEach((result, i) => {
        const name = children[i]!.name;
        const expectAccepted = name === 'bare' || accepted;
        if (expectAccepted ? result.non2xx > 0 : result.non2xx < result.requests)
          throw new Error(`${name}: ${scenario}: ${result.non2xx} of ${result.requests} responses were not what the scenario expects`);
      });
      const [bare, ...others] = results;
      const peer = results[2];
      others.forEach((result, i) => {
        const key = `${children[i + 1]!.name}${withTls ? ' (TLS)' : ''}: ${scenario}`;
        const row = rows.get(key) ?? { rate: [], cpu: [], peer: [], rps: [], micros: [] };
        row.rate.push(result.rps / bare!.rps);
        row.cpu.push(bare!.micros / result.micros);
        if (peer !== undefined) row.peer.push(result.rps / peer.rps);
        row.rps.push(result.rps);
        row.micros.push(result.micros);
        rows.set(key, row);
      });
      const bareKey = `bare${withTls ? ' (TLS)' : ''}: forwarding, reused token`;
      const bareRow = rows.get(bareKey) ?? { rate: [], cpu: [], peer: [], rps: [], micros: [] };
      bareRow.rps.push(bare!.rps);
      bareRow.micros.push(bare!.micros);
      rows.set(bareKey, bareRow);
      process.stderr.write(
        `${withTls ? 'TLS ' : ''}${scenario}: ${results.map((r, i) => `${children[i]!.name} ${Math.round(r.rps)} req/s ${r.micros.toFixed(1)} µs`).join(', ')}\n`,
      );
    }
  }
  for (const { name, child } of children) {
    const label = `${name}${withTls ? ' (TLS)' : ''}`;
    peaks.set(label, [peakMb(child.pid!)]);
    await stop(child);
  }
}
await bench.close();

const fixed = (values: number[], digits = 2) => (values.length === 0 ? '' : median(values).toFixed(digits));
const lines = [
  '| proxy: scenario | × bare proxy, req/s side by side | × bare proxy, by CPU a request | × oauth2-proxy, req/s side by side | req/s | CPU µs a request |',
  '|---|---:|---:|---:|---:|---:|',
  ...[...rows].map(
    ([key, row]) =>
      `| ${key} | ${fixed(row.rate)} | ${fixed(row.cpu)} | ${key.startsWith('oauth2-proxy') ? '1.00' : fixed(row.peer)} | ${Math.round(median(row.rps))} | ${fixed(row.micros, 1)} |`,
  ),
  '',
  `| proxy | peak RSS (VmHWM) MiB |`,
  '|---|---:|',
  ...[...peaks].map(([label, values]) => `| ${label} | ${median(values).toFixed(0)} |`),
  '',
  `${ROUNDS} rounds of ${SECONDS} s a scenario (median), every proxy on core 1 at once, wrk -t1 -c50 each and the upstream on core 0; load average (1 min) over the runs ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}.`,
];
writeFileSync(`${OUT}rejections.md`, lines.join('\n') + '\n');
process.stdout.write(lines.join('\n') + '\n');
