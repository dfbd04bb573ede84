// What the benchmark scripts share: processes pinned to a core, waiting for a port, wrk runs,
// resident memory, many distinct tokens signed quickly, CPU time per request, sidecars loaded
// side by side, and timing the sidecar's token verification in this process.

import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { KeyObject, randomUUID, sign } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startIssuer, type SigningKey, type TestIssuer } from '../test/helpers/issuer.js';
import { imageCommand, imageEnv } from '../test/helpers/dockerfile.js';
import { createVerifier, type Verify, type VerifyToResult } from '../src/auth/verify.js';
import { withVerdictCache } from '../src/auth/verdict-cache.js';
import { RemoteKeySet } from '../src/auth/keyset.js';
import { createLogger } from '../src/observability/log.js';
import { loadConfig, trustedIssuers, type Config } from '../src/config/config.js';

export const OUT = new URL('./out/', import.meta.url).pathname;
mkdirSync(OUT, { recursive: true });
// The scripts name what they spawn relative to the repository root (dist/main.js, bench/targets/...).
process.chdir(new URL('..', import.meta.url).pathname);

/** Builds dist/ from src/, so that what is measured is the code as it stands. */
export function buildSidecar(): void {
  execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
}

const run = promisify(execFile);
const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-c', '0', 'true']);
    return true;
  } catch {
    return false;
  }
})();
export const PINNING = hasTaskset ? 'taskset: wrk + upstream on core 0, proxy on core 1' : 'no taskset';

/** A command pinned to one core when taskset is there. */
export function pinned(core: number, command: string, args: string[]): [string, string[]] {
  return hasTaskset ? ['taskset', ['-c', String(core), command, ...args]] : [command, args];
}

/** The Node that runs the measured processes: BENCH_NODE (e.g. the Node 24 that CI installs), else this one. */
export const TARGET_NODE = process.env.BENCH_NODE ?? process.execPath;

/** The environment the image gives the sidecar (its ENV lines), so it is measured as shipped. */
export const IMAGE_ENV = imageEnv();

/** What the image's CMD gives node (its V8 flags, then dist/main.js), so it is measured as shipped. */
export const IMAGE_ARGS = imageCommand().slice(1);

/** The sidecar's environment in a benchmark: the image's, on loopback, for `issuer`'s tokens with azp=coder. */
export function sidecarEnv({
  port,
  adminPort,
  issuer,
  upstreamUrl,
}: {
  port: number;
  adminPort: number;
  issuer: string;
  upstreamUrl: string;
}): Record<string, string> {
  return {
    PORT: String(port),
    ADMIN_PORT: String(adminPort),
    HOST: '127.0.0.1',
    ADMIN_HOST: '127.0.0.1',
    OIDC_ISSUER: issuer,
    OIDC_ALLOWED_AZP: 'coder',
    UPSTREAM_URL: upstreamUrl,
    ...IMAGE_ENV,
  };
}

// A bench that fails midway must not leave its servers holding the ports of the next run.
const spawned = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of spawned) child.kill('SIGKILL');
});

export function spawnPinned(
  core: number,
  args: string[],
  env: Record<string, string>,
  stdio: 'ignore' | 'inherit' = 'ignore',
): ChildProcess {
  const [command, commandArgs] = pinned(core, TARGET_NODE, args);
  const child = spawn(command, commandArgs, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', stdio] });
  spawned.add(child);
  child.once('exit', () => spawned.delete(child));
  return child;
}

export function waitForPort(port: number, deadlineMs = 20_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => (Date.now() > deadline ? reject(new Error(`port ${port} never opened`)) : setTimeout(attempt, 50)));
    };
    attempt();
  });
}

export function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  return exited;
}

/** The middle value (the upper one of an even count): what the benchmarks report of their rounds. */
export function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

export interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
}

function toMs(value: string): number {
  const n = parseFloat(value);
  if (value.endsWith('us')) return n / 1000;
  if (value.endsWith('ms')) return n;
  if (value.endsWith('s')) return n * 1000;
  return n;
}

export interface WrkOptions {
  headers?: string[];
  script?: string;
  scriptArg?: string;
}

/** wrk on core 0, asynchronous so that an issuer in this process keeps answering meanwhile. */
export async function wrk(
  url: string,
  seconds: number,
  connections: number,
  { headers = [], script, scriptArg }: WrkOptions = {},
): Promise<WrkResult> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', ...headers.flatMap((h) => ['-H', h])];
  if (script) args.push('-s', script);
  args.push(url);
  if (scriptArg) args.push('--', scriptArg);
  const [command, commandArgs] = pinned(0, 'wrk', args);
  const { stdout: out } = await run(command, commandArgs, { encoding: 'utf8' });
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)![1]),
    p50: toMs(/\s50%\s+(\S+)/.exec(out)![1]!),
    p99: toMs(/\s99%\s+(\S+)/.exec(out)![1]!),
    requests: Number(/(\d+) requests in/.exec(out)![1]),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
  };
}

/** `count` distinct tokens like `template` (a token of the issuer), signed on the thread pool. */
export async function distinctTokens(issuer: TestIssuer, key: SigningKey, count: number, lifetimeSeconds: number): Promise<string[]> {
  const template = JSON.parse(
    Buffer.from(
      (await issuer.mint({ exp: Math.floor(Date.now() / 1000) + lifetimeSeconds }, { key })).split('.')[1]!,
      'base64url',
    ).toString(),
  );
  const header = Buffer.from(JSON.stringify({ alg: key.alg, typ: 'JWT', kid: key.kid })).toString('base64url');
  const privateKey = KeyObject.from(key.privateKey as never);
  const hash = key.alg === 'EdDSA' ? null : `sha${key.alg.slice(2)}`;
  const options = key.alg.startsWith('ES') ? { key: privateKey, dsaEncoding: 'ieee-p1363' as const } : privateKey;
  return Promise.all(
    Array.from({ length: count }, (_, n) => {
      const input = `${header}.${Buffer.from(JSON.stringify({ ...template, jti: randomUUID(), n })).toString('base64url')}`;
      return new Promise<string>((resolve, reject) =>
        sign(hash, Buffer.from(input), options, (error, signature) =>
          error ? reject(error) : resolve(`${input}.${signature.toString('base64url')}`),
        ),
      );
    }),
  );
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));

/** User + system CPU seconds a process has used (/proc/PID/stat fields 14 and 15). */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

export type CpuScenario = 'reused token' | 'never-seen tokens' | 'no token' | 'bad signature';
export const CPU_SCENARIOS: CpuScenario[] = ['reused token', 'never-seen tokens', 'no token', 'bad signature'];

export interface CpuBench {
  issuer: TestIssuer;
  upstreamUrl: string;
  /** wrk's options for each scenario: one token reused or spoilt, or 40,000 never seen before. */
  options: Record<CpuScenario, WrkOptions>;
  close(): Promise<void>;
}

/** What bench:floor and bench:ab measure against: an issuer and its tokens, and the upstream on core 0. */
export async function startCpuBench(name: string, upstreamPort: number): Promise<CpuBench> {
  const issuer = await startIssuer();
  const key = await issuer.addKey('RS256', { kid: `${name}-key` });
  const token = await issuer.mint({ exp: Math.floor(Date.now() / 1000) + 3600 });
  const freshFile = `${OUT}${name}-tokens.txt`;
  writeFileSync(freshFile, (await distinctTokens(issuer, key, 40_000, 3600)).join('\n') + '\n');
  const upstream = spawnPinned(0, ['bench/targets/upstream.mjs'], { PORT: String(upstreamPort) });
  await waitForPort(upstreamPort);
  return {
    issuer,
    upstreamUrl: `http://127.0.0.1:${upstreamPort}`,
    options: {
      'reused token': { headers: [`Authorization: Bearer ${token}`] },
      'never-seen tokens': { script: 'bench/fresh-tokens.lua', scriptArg: freshFile },
      'no token': {},
      'bad signature': { headers: [`Authorization: Bearer ${token.slice(0, -8)}AAAAAAAA`] },
    },
    async close() {
      await stop(upstream);
      await issuer.close();
    },
  };
}

/**
 * The CPU time the process `pid` (the target `name`) spends on a request (user + system over
 * requests, in µs) while wrk sends one scenario to `baseUrl`: unlike wrk's rate, it does not
 * depend on how busy wrk is. A target that fails its requests measures nothing: accepted
 * scenarios must all be 2xx, rejected ones none.
 */
export async function cpuPerRequest(
  name: string,
  pid: number,
  baseUrl: string,
  scenario: CpuScenario,
  options: WrkOptions,
  seconds: number,
): Promise<{ rps: number; micros: number }> {
  const before = cpuSeconds(pid);
  // The never-seen script names its own path.
  const result = await wrk(scenario === 'never-seen tokens' ? baseUrl : `${baseUrl}/mcp`, seconds, 50, options);
  const micros = ((cpuSeconds(pid) - before) * 1e6) / result.requests;
  checkAnswers(name, scenario, scenario === 'reused token' || scenario === 'never-seen tokens', result);
  return { rps: result.rps, micros };
}

/** Throws unless the answers `name` gave in `scenario` are what it expects: all 2xx when accepted, none otherwise. */
function checkAnswers(name: string, scenario: string, accepted: boolean, result: { non2xx: number; requests: number }): void {
  if (accepted ? result.non2xx > 0 : result.non2xx < result.requests) {
    throw new Error(`${name}: ${scenario}: ${result.non2xx} of ${result.requests} responses were not what the scenario expects`);
  }
}

/** A process under load in a side-by-side run: its name, the URL wrk sends to, and its pid. */
export interface SideBySideTarget {
  name: string;
  url: string;
  pid: number;
  options: WrkOptions;
}

export interface SideBySideResult {
  rps: number;
  /** CPU µs a request: higher than alone, as the targets share one core. */
  micros: number;
  requests: number;
  non2xx: number;
}

/**
 * Loads every target at once, one wrk each, for `seconds`: the targets (all pinned to the same
 * core) share that core at the same moments, so a slower VM, a neighbour or a frequency change
 * slows them all alike, and the ratio of their rates is the inverse ratio of their CPU costs.
 * Taken in turns, pairs of runs moved 0.71x to 1.16x on this VM; side by side, two identical
 * sidecars stay within 0.97x to 1.03x of each other (bench/RESULTS.md).
 */
export async function sideBySide(targets: SideBySideTarget[], seconds: number, connections = 50): Promise<SideBySideResult[]> {
  const before = targets.map((target) => cpuSeconds(target.pid));
  const results = await Promise.all(targets.map((target) => wrk(target.url, seconds, connections, target.options)));
  return results.map((result, i) => ({
    rps: result.rps,
    micros: ((cpuSeconds(targets[i]!.pid) - before[i]!) * 1e6) / result.requests,
    requests: result.requests,
    non2xx: result.non2xx,
  }));
}

/** Per `${scenario}: ${target}`, a value a round: its req/s over the first target's, its CPU µs a request. */
export type RoundRows = Map<string, { ratios: number[]; micros: number[] }>;

/**
 * One side-by-side run of `scenario` against `targets`, added to `rows`, the rates printed to
 * stderr; throws when a target's answers are not what the scenario expects.
 */
export async function sideBySideRound(
  rows: RoundRows,
  scenario: { name: string; accepted: boolean },
  targets: SideBySideTarget[],
  seconds: number,
): Promise<SideBySideResult[]> {
  const results = await sideBySide(targets, seconds);
  results.forEach((result, i) => {
    const name = targets[i]!.name;
    checkAnswers(name, scenario.name, scenario.accepted, result);
    const key = `${scenario.name}: ${name}`;
    const row = rows.get(key) ?? { ratios: [], micros: [] };
    row.ratios.push(result.rps / results[0]!.rps);
    row.micros.push(result.micros);
    rows.set(key, row);
  });
  process.stderr.write(`${scenario.name}: ${results.map((r, i) => `${targets[i]!.name} ${r.rps.toFixed(0)} req/s`).join(', ')}\n`);
  return results;
}

/** A sidecar a benchmark loads, on core 1. */
export interface BenchSidecar {
  name: string;
  port: number;
  adminPort: number;
  child: ChildProcess;
  /** What sideBySide loads: this sidecar at `path`, with wrk's `options`. */
  target(path: string, options: WrkOptions): SideBySideTarget;
}

/**
 * Sidecars on core 1, the i-th on `port + i` (admin port `adminPort + i`), each with sidecarEnv
 * for `issuer` and `upstreamUrl` and its own `env`, run as the image runs it or with its own node
 * `args`; resolves once every one listens.
 */
export async function startSidecars(
  sidecars: { name: string; env?: Record<string, string>; args?: string[] }[],
  { port, adminPort, issuer, upstreamUrl }: { port: number; adminPort: number; issuer: string; upstreamUrl: string },
): Promise<BenchSidecar[]> {
  const started = sidecars.map(({ name, env = {}, args = IMAGE_ARGS }, i): BenchSidecar => {
    const ports = { port: port + i, adminPort: adminPort + i };
    const child = spawnPinned(1, args, { ...sidecarEnv({ ...ports, issuer, upstreamUrl }), ...env });
    return {
      name,
      ...ports,
      child,
      target: (path, options) => ({ name, url: `http://127.0.0.1:${ports.port}${path}`, pid: child.pid!, options }),
    };
  });
  await Promise.all(started.map((sidecar) => waitForPort(sidecar.port)));
  return started;
}

/** oauth2-proxy v7.15 (`go install`, .ci/run does it), or the binary BENCH_OAUTH2_PROXY names; undefined when neither is there. */
export const OAUTH2_PROXY = [process.env.BENCH_OAUTH2_PROXY, join(homedir(), 'go', 'bin', 'oauth2-proxy')].find((p) => p && existsSync(p));

/** A certificate and key file for a target's proxy port. */
export interface Tls {
  certFile: string;
  keyFile: string;
}

/**
 * oauth2-proxy validating bearer JWTs itself (--skip-jwt-bearer-tokens: the issuer's JWKS from
 * discovery, aud checked against the client id and extra audiences; it has no azp rule, so the
 * tokens' aud `account` is accepted), no login flow for a request without one (--api-route: 401).
 * Flush interval 0 so that an event stream reaches the client event by event as through the sidecar.
 */
export function oauth2ProxyArgs(port: number, issuer: string, upstreamUrl: string, tls: Tls | undefined): string[] {
  return [
    ...(tls === undefined
      ? [`--http-address=127.0.0.1:${port}`]
      : [
          // Its plain listener on a port of its own, unused.
          `--http-address=127.0.0.1:${port + 100}`,
          `--https-address=127.0.0.1:${port}`,
          `--tls-cert-file=${tls.certFile}`,
          `--tls-key-file=${tls.keyFile}`,
        ]),
    `--upstream=${upstreamUrl}/`,
    '--provider=oidc',
    `--oidc-issuer-url=${issuer}`,
    '--client-id=coder',
    '--client-secret=bench-secret',
    '--oidc-extra-audience=account',
    '--skip-jwt-bearer-tokens=true',
    '--api-route=^/',
    '--cookie-secret=0123456789abcdef0123456789abcdef',
    '--email-domain=*',
    '--flush-interval=0s',
    '--request-logging=false',
    '--standard-logging=false',
    '--auth-logging=false',
    '--reverse-proxy=true',
  ];
}

/** Microseconds each of `count` operations takes in `run`, the best of five passes. */
export async function bestMicros(run: () => unknown, count: number): Promise<number> {
  let fastest = Infinity;
  for (let pass = 0; pass < 5; pass++) {
    const started = process.hrtime.bigint();
    await run();
    fastest = Math.min(fastest, Number(process.hrtime.bigint() - started) / count / 1000);
  }
  return fastest;
}

export interface InProcessVerifier {
  config: Readonly<Config>;
  /** The sidecar's verify, no cache. */
  verify: Verify;
  /** The same behind the verdict cache. */
  cachedVerify: VerifyToResult;
  close(): void;
}

/**
 * The sidecar's token verification in this process for tokens of `issuer` with azp=coder (and
 * what `env` adds to the configuration): its key set fetched once, its logs silent.
 */
export async function inProcessVerifier(issuer: string, env: Record<string, string> = {}): Promise<InProcessVerifier> {
  const config = loadConfig({ OIDC_ISSUER: issuer, OIDC_ALLOWED_AZP: 'coder', ...env });
  const keys = new RemoteKeySet({
    issuer,
    jwksUri: undefined,
    refreshMs: 3_600_000,
    cooldownMs: 30_000,
    maxStaleMs: 86_400_000,
    logger: createLogger('silent'),
  });
  await keys.start();
  const verify = createVerifier(
    config,
    trustedIssuers(config).map((entry) => ({ issuer: entry, keys })),
  );
  const cachedVerify = withVerdictCache(verify, { maxEntries: 10_000, keys, now: Date.now });
  return { config, verify, cachedVerify, close: () => keys.close() };
}
