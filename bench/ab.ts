// npm run bench:ab -- REV REV...: what one change does to the CPU a request costs. The sidecar
// is built from each git revision (a commit or branch; `.` is the working tree) and measured as
// bench:floor measures it (user + system CPU over requests, as the image runs it), the revisions
// taking turns within every round so that the VM's drift hits all alike. BENCH_ROUNDS (default
// 5), BENCH_SECONDS (default 5). Prints a markdown table: medians, then every round.

import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { CPU_SCENARIOS, IMAGE_ARGS, OUT, cpuPerRequest, median, sidecarEnv, spawnPinned, startCpuBench, stop, waitForPort, wrk } from './lib.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const PORTS = { upstream: 18700, target: 18703, admin: 19703 };
const revisions = process.argv.slice(2);
if (revisions.length < 2) throw new Error('name at least two revisions to compare, e.g. `npm run bench:ab -- HEAD~1 .`');

/** dist/ of a revision, compiled into bench/out/ab/, where Node still finds this checkout's node_modules. */
function build(revision: string): string {
  const name = revision === '.' ? 'working-tree' : execFileSync('git', ['rev-parse', '--short', revision], { encoding: 'utf8' }).trim();
  const sources = `${OUT}ab/${name}-src/`;
  const dist = `${OUT}ab/${name}/`;
  rmSync(sources, { recursive: true, force: true });
  rmSync(dist, { recursive: true, force: true });
  mkdirSync(sources, { recursive: true });
  const files = ['src', 'tsconfig.json', 'tsconfig.build.json'];
  if (revision === '.') for (const file of files) cpSync(file, `${sources}${file}`, { recursive: true });
  else execFileSync('sh', ['-c', `git archive ${name} ${files.join(' ')} | tar -x -C ${sources}`]);
  execFileSync('npx', ['tsc', '-p', `${sources}tsconfig.build.json`, '--outDir', dist], { stdio: 'inherit' });
  return dist;
}

const builds = revisions.map((revision) => ({ revision, main: `${build(revision)}main.js` }));
const bench = await startCpuBench('ab', PORTS.upstream);
const { issuer, upstreamUrl, options } = bench;

const micros = new Map<string, number[]>();
for (let round = 0; round < ROUNDS; round++) {
  for (const { revision, main } of builds) {
    const args = IMAGE_ARGS.map((arg) => (arg === 'dist/main.js' ? main : arg));
    const child = spawnPinned(1, args, sidecarEnv({ port: PORTS.target, adminPort: PORTS.admin, issuer: issuer.issuer, upstreamUrl }));
    await waitForPort(PORTS.target);
    const url = `http://127.0.0.1:${PORTS.target}`;
    await wrk(`${url}/mcp`, 2, 50, options['reused token']); // warm-up
    for (const scenario of CPU_SCENARIOS) {
      const result = await cpuPerRequest(revision, child.pid!, url, scenario, options[scenario], SECONDS);
      const row = `${scenario}: ${revision}`;
      micros.set(row, [...(micros.get(row) ?? []), result.micros]);
      process.stderr.write(`${row}: ${result.micros.toFixed(1)} µs CPU a request\n`);
    }
    await stop(child);
  }
}
await bench.close();

const lines = [
  '| scenario: revision | CPU µs a request (median) | rounds |',
  '|---|---:|---|',
  ...CPU_SCENARIOS.flatMap((scenario) => revisions.map((revision) => {
    const rounds = micros.get(`${scenario}: ${revision}`)!;
    return `| ${scenario}: ${revision} | ${median(rounds).toFixed(1)} | ${rounds.map((m) => m.toFixed(1)).join(' ')} |`;
  })),
];
process.stdout.write(lines.join('\n') + '\n');
