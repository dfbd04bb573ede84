// npm run bench: the sidecar against the upstream alone, a bare @fastify/http-proxy and a naive
// jose proxy, in alternation (A B A B) so that drift hits all alike. wrk and the upstream run on
// core 0, the proxy under test alone on core 1. Prints a markdown table for RESULTS.md.
// BENCH_SECONDS (default 8) and BENCH_ROUNDS (default 2) set the length.

import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { sign, KeyObject, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus } from 'node:os';
import { startIssuer } from '../test/helpers/issuer.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONNECTIONS = 50;
const FRESH_TOKENS = Number(process.env.BENCH_FRESH_TOKENS ?? 40_000);
// BENCH_TARGETS=bare,sidecar measures some of them only (quicker while profiling).
const TARGETS = (process.env.BENCH_TARGETS ?? 'bare,naive,sidecar').split(',') as ('bare' | 'naive' | 'sidecar')[];
const PORTS = { upstream: 18000, bare: 18001, naive: 18002, sidecar: 18003, admin: 19003 };
const run = promisify(execFile);
const OUT = new URL('./out/', import.meta.url).pathname;
mkdirSync(OUT, { recursive: true });

const hasTaskset = (() => { try { execFileSync('taskset', ['-c', '0', 'true']); return true; } catch { return false; } })();
const pinned = (core: number, command: string, args: string[]) => (hasTaskset ? ['taskset', ['-c', String(core), command, ...args]] : [command, args]) as [string, string[]];

function waitForPort(port: number, deadlineMs = 20_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); resolve(); });
      socket.once('error', () => (Date.now() > deadline ? reject(new Error(`port ${port} never opened`)) : setTimeout(attempt, 50)));
    };
    attempt();
  });
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

interface WrkResult { rps: number; p50: number; p99: number }

function toMs(value: string): number {
  const n = parseFloat(value);
  if (value.endsWith('us')) return n / 1000;
  if (value.endsWith('ms')) return n;
  if (value.endsWith('s')) return n * 1000;
  return n;
}

// Asynchronous, so the issuer in this process keeps answering JWKS fetches during a run.
async function wrk(url: string, { headers = [], script, scriptArg }: { headers?: string[]; script?: string; scriptArg?: string } = {}): Promise<WrkResult> {
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '--latency', ...headers.flatMap((h) => ['-H', h])];
  if (script) args.push('-s', script);
  args.push(url);
  if (scriptArg) args.push('--', scriptArg);
  const [command, commandArgs] = pinned(0, 'wrk', args);
  const { stdout: out } = await run(command, commandArgs, { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)![1]);
  const p50 = toMs(/\s50%\s+(\S+)/.exec(out)![1]!);
  const p99 = toMs(/\s99%\s+(\S+)/.exec(out)![1]!);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1];
  return { rps, p50, p99, ...(non2xx ? { non2xx: Number(non2xx) } : {}) };
}

async function startTarget(name: 'bare' | 'naive' | 'sidecar', env: Record<string, string>): Promise<ChildProcess> {
  const script = name === 'sidecar' ? 'dist/main.js' : `bench/targets/${name === 'bare' ? 'bare-proxy' : 'naive-jose-proxy'}.mjs`;
  const [command, args] = pinned(1, process.execPath, [script]);
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  await waitForPort(PORTS[name]);
  return child;
}

async function main() {
  execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
  const issuer = await startIssuer();
  const key = await issuer.addKey('RS256', { kid: 'bench-key' });
  const upstreamUrl = `http://127.0.0.1:${PORTS.upstream}`;
  const [uCommand, uArgs] = pinned(0, process.execPath, ['bench/targets/upstream.mjs']);
  const upstream = spawn(uCommand, uArgs, { env: { ...process.env, PORT: String(PORTS.upstream) }, stdio: 'ignore' });
  await waitForPort(PORTS.upstream);

  const env = {
    bare: { PORT: String(PORTS.bare), UPSTREAM_URL: upstreamUrl },
    naive: { PORT: String(PORTS.naive), UPSTREAM_URL: upstreamUrl, JWKS_URI: issuer.jwksUri, ISSUER: issuer.issuer },
    sidecar: {
      PORT: String(PORTS.sidecar), ADMIN_PORT: String(PORTS.admin), HOST: '127.0.0.1', ADMIN_HOST: '127.0.0.1',
      OIDC_ISSUER: issuer.issuer, OIDC_ALLOWED_AZP: 'coder', UPSTREAM_URL: upstreamUrl, LOG_LEVEL: 'info', NODE_ENV: 'production',
    },
  };

  // Tokens: one reused, and FRESH_TOKENS distinct ones (signed on the thread pool, both cores).
  const token = await issuer.mint({ exp: Math.floor(Date.now() / 1000) + 3600 });
  const freshFile = `${OUT}fresh-tokens.txt`;
  const privateKey = KeyObject.from(key.privateKey as never);
  const header = Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: key.kid })).toString('base64url');
  const base = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
  const fresh = await Promise.all(Array.from({ length: FRESH_TOKENS }, (_, i) => {
    const input = `${header}.${Buffer.from(JSON.stringify({ ...base, jti: randomUUID(), n: i })).toString('base64url')}`;
    return new Promise<string>((resolve, reject) => sign('sha256', Buffer.from(input), privateKey, (err, sig) => (err ? reject(err) : resolve(`${input}.${sig.toString('base64url')}`))));
  }));
  writeFileSync(freshFile, fresh.join('\n') + '\n');
  const badSignature = `${token.slice(0, -8)}AAAAAAAA`;
  const unknownKid = await issuer.mint({}, { header: { kid: 'not-in-the-set' } });

  const results: Record<string, { rps: number[]; p50: number[]; p99: number[]; rss: number[] }> = {};
  const record = (row: string, r: WrkResult, rss: number) => {
    const entry = (results[row] ??= { rps: [], p50: [], p99: [], rss: [] });
    entry.rps.push(r.rps); entry.p50.push(r.p50); entry.p99.push(r.p99); entry.rss.push(rss);
    process.stderr.write(`${row}: ${Math.round(r.rps)} req/s p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms rss ${rss.toFixed(0)} MB${'non2xx' in r ? ` non-2xx ${(r as { non2xx: number }).non2xx}` : ''}\n`);
  };
  const auth = [`Authorization: Bearer ${token}`];
  let jwksFetchesDuringFlood = 0;

  for (let round = 0; round < ROUNDS; round++) {
    record('upstream directly', await wrk(`${upstreamUrl}/mcp`), rssMb(upstream.pid!));
    for (const name of TARGETS) {
      const target = await startTarget(name, env[name]);
      const url = `http://127.0.0.1:${PORTS[name]}`;
      await wrk(`${url}/mcp`, { headers: auth }); // warm-up, not recorded
      record(`${name}: reused token`, await wrk(`${url}/mcp`, { headers: auth }), rssMb(target.pid!));
      if (name !== 'bare') {
        record(`${name}: never-seen tokens`, await wrk(url, { script: 'bench/fresh-tokens.lua', scriptArg: freshFile }), rssMb(target.pid!));
      }
      record(`${name}: SSE response`, await wrk(`${url}/sse`, { headers: auth }), rssMb(target.pid!));
      if (name === 'sidecar') {
        record('sidecar: rejected, no token', await wrk(`${url}/mcp`), rssMb(target.pid!));
        record('sidecar: rejected, bad signature', await wrk(`${url}/mcp`, { headers: [`Authorization: Bearer ${badSignature}`] }), rssMb(target.pid!));
        const before = issuer.requests.jwks;
        record('sidecar: rejected, unknown kid', await wrk(`${url}/mcp`, { headers: [`Authorization: Bearer ${unknownKid}`] }), rssMb(target.pid!));
        jwksFetchesDuringFlood = Math.max(jwksFetchesDuringFlood, issuer.requests.jwks - before);
      }
      target.kill('SIGTERM');
      await new Promise((resolve) => target.once('exit', resolve));
    }
  }
  upstream.kill();
  await issuer.close();

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const bare = median(results['bare: reused token']?.rps ?? [NaN]);
  const bareRss = median(results['bare: reused token']?.rss ?? [NaN]);
  const lines = [
    `| scenario | req/s | × bare proxy | p50 ms | p99 ms | RSS MB |`,
    `|---|---:|---:|---:|---:|---:|`,
    ...Object.entries(results).map(([row, r]) =>
      `| ${row} | ${Math.round(median(r.rps))} | ${(median(r.rps) / bare).toFixed(2)} | ${median(r.p50).toFixed(2)} | ${median(r.p99).toFixed(2)} | ${median(r.rss).toFixed(0)} |`),
    '',
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}, wrk -t1 -c${CONNECTIONS} -d${SECONDS}s, ${ROUNDS} rounds (median), ${hasTaskset ? 'taskset: wrk + upstream on core 0, proxy on core 1' : 'no taskset'}.`,
    `Bare proxy RSS ${bareRss.toFixed(0)} MB. JWKS fetches during an unknown-kid flood of ${SECONDS} s: ${jwksFetchesDuringFlood} (cooldown 30 s).`,
  ];
  writeFileSync(`${OUT}results.md`, lines.join('\n') + '\n');
  process.stdout.write(lines.join('\n') + '\n');
}

if (!existsSync('package.json')) throw new Error('run from the repository root: npm run bench');
await main();
