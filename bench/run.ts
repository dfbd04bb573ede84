// npm run bench: the sidecar against the upstream alone, a bare @fastify/http-proxy and a naive
// jose proxy, in alternation (A B A B) so that drift hits all alike. wrk and the upstream run on
// core 0, the proxy under test alone on core 1. Prints a markdown table for RESULTS.md.
// BENCH_SECONDS (default 8), BENCH_ROUNDS (default 3, the median is reported) and
// BENCH_TARGETS (default bare,naive,sidecar) set what runs; BENCH_NODE, the Node binary they run on.
// BENCH_TLS: `both` (default) measures every proxy a second time with TLS on its proxy port (a
// P-256 certificate; wrk keeps its connections, so a handshake is paid only when a proxy closes
// one), `off` or `only`. Besides req/s, each row has the proxy's CPU time a request (user +
// system over requests): on a shared machine, where wrk may not keep a proxy busy, the ratio of
// CPU costs still says what the proxy would do alone. And each proxy's peak resident set (VmHWM)
// over all its scenarios of a round.
// The sidecar runs as the image runs it (the Dockerfile's ENV lines and CMD), the baselines
// with Node's defaults; the target sidecar-v8-defaults is the sidecar without the image's V8 settings, to see what they change.
// The target oauth2-proxy is the peer platform teams use instead: oauth2-proxy v7.15 (`go install`,
// .ci/run does it; BENCH_OAUTH2_PROXY names another binary) in JWT bearer mode against the same
// issuer and upstream. It is in the default targets when its binary is found.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { startIssuer } from '../test/helpers/issuer.js';
import { createCa } from '../test/helpers/certificates.js';
import {
  IMAGE_ARGS,
  IMAGE_ENV,
  OUT,
  PINNING,
  buildSidecar,
  cpuSeconds,
  pinned,
  TARGET_NODE,
  distinctTokens,
  median,
  rssMb,
  sidecarEnv,
  spawnPinned,
  stop,
  waitForPort,
  wrk,
  type WrkResult,
  OAUTH2_PROXY,
  oauth2ProxyArgs,
  type Tls,
} from './lib.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = 50;
const FRESH_TOKENS = Number(process.env.BENCH_FRESH_TOKENS ?? 40_000);
type Target = 'bare' | 'naive' | 'sidecar' | 'sidecar-v8-defaults' | 'oauth2-proxy';
const TARGETS = (process.env.BENCH_TARGETS ?? `bare,naive,sidecar${OAUTH2_PROXY ? ',oauth2-proxy' : ''}`).split(',') as Target[];
const TLS_CHOICES: Record<string, boolean[]> = { both: [false, true], off: [false], only: [true] };
const TLS_MODES = TLS_CHOICES[process.env.BENCH_TLS ?? 'both'] ?? [];
if (TLS_MODES.length === 0) throw new Error('BENCH_TLS is both, off or only');
const PORTS = { upstream: 18000, bare: 18001, naive: 18002, sidecar: 18003, 'sidecar-v8-defaults': 18004, 'oauth2-proxy': 18005 };
const ARGS = {
  bare: ['bench/targets/bare-proxy.mjs'],
  naive: ['bench/targets/naive-jose-proxy.mjs'],
  sidecar: IMAGE_ARGS,
  'sidecar-v8-defaults': ['dist/main.js'],
};

/** The environment that gives a target TLS on its proxy port: the sidecar's variables, which the baselines read too. */
function tlsEnv(tls: Tls | undefined): Record<string, string> {
  return tls === undefined ? {} : { TLS_CERT_FILE: tls.certFile, TLS_KEY_FILE: tls.keyFile };
}

/** Peak resident set of a process so far, MiB. */
function peakRssMb(pid: number): number {
  return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

async function startTarget(name: Target, env: Record<string, string>, tls: Tls | undefined): Promise<ChildProcess> {
  let child: ChildProcess;
  if (name === 'oauth2-proxy') {
    if (!OAUTH2_PROXY)
      throw new Error(
        'oauth2-proxy not found: go install github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6 (.ci/run does), or set BENCH_OAUTH2_PROXY',
      );
    const [command, args] = pinned(1, OAUTH2_PROXY, oauth2ProxyArgs(PORTS['oauth2-proxy'], env.ISSUER!, env.UPSTREAM_URL!, tls));
    child = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  } else child = spawnPinned(1, ARGS[name], { ...env, ...tlsEnv(tls) }, 'inherit');
  await waitForPort(PORTS[name]);
  return child;
}

async function main() {
  buildSidecar();
  const issuer = await startIssuer();
  const key = await issuer.addKey('RS256', { kid: 'bench-key' });
  const upstreamUrl = `http://127.0.0.1:${PORTS.upstream}`;
  const upstream = spawnPinned(0, ['bench/targets/upstream.mjs'], { PORT: String(PORTS.upstream) });
  await waitForPort(PORTS.upstream);

  const sidecar = (port: number) => ({
    ...sidecarEnv({ port, adminPort: port + 1000, issuer: issuer.issuer, upstreamUrl }),
    LOG_LEVEL: 'info',
  });
  const env: Record<Target, Record<string, string>> = {
    bare: { PORT: String(PORTS.bare), UPSTREAM_URL: upstreamUrl },
    naive: { PORT: String(PORTS.naive), UPSTREAM_URL: upstreamUrl, JWKS_URI: issuer.jwksUri, ISSUER: issuer.issuer },
    sidecar: sidecar(PORTS.sidecar),
    'sidecar-v8-defaults': { ...sidecar(PORTS['sidecar-v8-defaults']), NODE_OPTIONS: '' },
    'oauth2-proxy': { ISSUER: issuer.issuer, UPSTREAM_URL: upstreamUrl },
  };

  // Tokens: one reused, and FRESH_TOKENS distinct ones, so that no cache can help.
  const token = await issuer.mint({ exp: Math.floor(Date.now() / 1000) + 3600 });
  const freshFile = `${OUT}fresh-tokens.txt`;
  writeFileSync(freshFile, (await distinctTokens(issuer, key, FRESH_TOKENS, 3600)).join('\n') + '\n');
  const badSignature = `${token.slice(0, -8)}AAAAAAAA`;
  const unknownKid = await issuer.mint({}, { header: { kid: 'not-in-the-set' } });

  const expired = await issuer.mint({ exp: Math.floor(Date.now() / 1000) - 3600 });
  const ca = createCa('openssl');
  const leaf = ca.issue('01');
  const tls: Tls = { certFile: `${OUT}bench-cert.pem`, keyFile: `${OUT}bench-key.pem` };
  writeFileSync(tls.certFile, leaf.cert);
  writeFileSync(tls.keyFile, leaf.key);
  ca.close();

  type Row = { rps: number[]; micros: number[]; p50: number[]; p99: number[]; rss: number[] };
  const results: Record<string, Row> = {};
  const peaks: Record<string, number[]> = {};
  const record = (row: string, r: WrkResult, micros: number, rss: number) => {
    const entry = (results[row] ??= { rps: [], micros: [], p50: [], p99: [], rss: [] });
    entry.rps.push(r.rps);
    entry.micros.push(micros);
    entry.p50.push(r.p50);
    entry.p99.push(r.p99);
    entry.rss.push(rss);
    process.stderr.write(
      `${row}: ${Math.round(r.rps)} req/s ${micros.toFixed(1)} µs p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms rss ${rss.toFixed(0)} MB${r.non2xx ? ` non-2xx ${r.non2xx}` : ''}\n`,
    );
  };
  const auth = [`Authorization: Bearer ${token}`];
  const jwksFetchesDuringFlood: Record<string, number> = {};

  for (let round = 0; round < ROUNDS; round++) {
    record('upstream directly', await wrk(`${upstreamUrl}/mcp`, SECONDS, CONNECTIONS), 0, rssMb(upstream.pid!));
    for (const withTls of TLS_MODES) {
      for (const name of TARGETS) {
        const target = await startTarget(name, env[name], withTls ? tls : undefined);
        const label = withTls ? `${name} (TLS)` : name;
        const url = `${withTls ? 'https' : 'http'}://127.0.0.1:${PORTS[name]}`;
        const measure = async (row: string, path: string, options: Parameters<typeof wrk>[3] = {}) => {
          const before = cpuSeconds(target.pid!);
          const result = await wrk(`${url}${path}`, SECONDS, CONNECTIONS, options);
          record(`${label}: ${row}`, result, ((cpuSeconds(target.pid!) - before) * 1e6) / result.requests, rssMb(target.pid!));
        };
        await wrk(`${url}/mcp`, SECONDS, CONNECTIONS, { headers: auth }); // warm-up, not recorded
        await measure('reused token', '/mcp', { headers: auth });
        if (name !== 'bare') await measure('never-seen tokens', '', { script: 'bench/fresh-tokens.lua', scriptArg: freshFile });
        if (!withTls) await measure('SSE response', '/sse', { headers: auth });
        if (name !== 'bare') {
          await measure('rejected, no token', '/mcp');
          await measure('rejected, bad signature', '/mcp', { headers: [`Authorization: Bearer ${badSignature}`] });
        }
        if (!withTls && (name.startsWith('sidecar') || name === 'oauth2-proxy')) {
          await measure('rejected, expired', '/mcp', { headers: [`Authorization: Bearer ${expired}`] });
          const before = issuer.requests.jwks;
          await measure('rejected, unknown kid', '/mcp', { headers: [`Authorization: Bearer ${unknownKid}`] });
          jwksFetchesDuringFlood[name] = Math.max(jwksFetchesDuringFlood[name] ?? 0, issuer.requests.jwks - before);
        }
        (peaks[label] ??= []).push(peakRssMb(target.pid!));
        await stop(target);
      }
    }
  }
  await stop(upstream);
  await issuer.close();

  // Each row against the bare proxy forwarding a request, both over TLS or both not.
  const bare = (row: string) => results[row.includes('(TLS)') ? 'bare (TLS): reused token' : 'bare: reused token'];
  const lines = [
    `| scenario | req/s | × bare proxy | CPU µs a request | × bare proxy, by CPU | p50 ms | p99 ms | RSS MB |`,
    `|---|---:|---:|---:|---:|---:|---:|---:|`,
    ...Object.entries(results).map(([row, r]) => {
      const base = bare(row);
      const times = (value: number | undefined) => (value === undefined ? '' : value.toFixed(2));
      const rps = median(r.rps);
      const micros = median(r.micros);
      return `| ${row} | ${Math.round(rps)} | ${times(base && rps / median(base.rps))} | ${micros ? micros.toFixed(1) : ''} | ${times(base && micros ? median(base.micros) / micros : undefined)} | ${median(r.p50).toFixed(2)} | ${median(r.p99).toFixed(2)} | ${median(r.rss).toFixed(0)} |`;
    }),
    '',
    `| proxy | peak RSS (VmHWM) MiB, over a round's scenarios |`,
    `|---|---:|`,
    ...Object.entries(peaks).map(([label, values]) => `| ${label} | ${median(values).toFixed(0)} |`),
    '',
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(
        ' ',
      )} at the end, targets on Node ${execFileSync(TARGET_NODE, ['--version'], { encoding: 'utf8' }).trim()}, wrk -t1 -c${CONNECTIONS} -d${SECONDS}s, ${ROUNDS} rounds (median), ${PINNING}; sidecar as the image runs it: ${Object.entries(
      IMAGE_ENV,
    )
      .map(([name, value]) => `${name}=${value}`)
      .join(' ')} node ${IMAGE_ARGS.join(' ')}.`,
    `JWKS fetches during an unknown-kid flood of ${SECONDS} s: ${Object.entries(jwksFetchesDuringFlood)
      .map(([name, n]) => `${name} ${n}`)
      .join(', ')} (the sidecar's cooldown: 30 s).`,
    ...(TARGETS.includes('oauth2-proxy')
      ? [`oauth2-proxy: ${execFileSync(OAUTH2_PROXY!, ['--version'], { encoding: 'utf8' }).trim()}.`]
      : []),
  ];
  writeFileSync(`${OUT}results.md`, lines.join('\n') + '\n');
  process.stdout.write(lines.join('\n') + '\n');
}

await main();
