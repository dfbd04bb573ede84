// npm run bench:ab -- REV REV...: what one change does to the cost of a request. The sidecar
// is built from each git revision (a commit or branch; `.` is the working tree), one sidecar a
// revision, all on core 1 and loaded side by side (lib.ts sideBySide): the ratio of their req/s
// is the inverse ratio of their CPU costs, whatever the VM does meanwhile. Scenarios: bench:floor's
// four, and a 1 KB POST that is not JSON (forwarded unread). BENCH_ROUNDS (default 5) of
// BENCH_SECONDS (default 5) a scenario. Prints a markdown table: each revision against the first.

import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import {
  CPU_SCENARIOS,
  IMAGE_ARGS,
  OUT,
  median,
  sideBySide,
  sideBySideRound,
  startCpuBench,
  startSidecars,
  stop,
  type RoundRows,
  type WrkOptions,
} from './lib.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const UPSTREAM_PORT = 18700;
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
  // src/lib/version.ts reads ../../package.json beside dist/ (its "type": "module" also applies to it).
  cpSync('package.json', `${OUT}ab/package.json`);
  return dist;
}

const builds = revisions.map((revision) => ({ revision, main: `${build(revision)}main.js` }));
const bench = await startCpuBench('ab', UPSTREAM_PORT);
const { issuer, upstreamUrl, options } = bench;
const scenarios: { name: string; options: WrkOptions; path: string; accepted: boolean }[] = [
  ...CPU_SCENARIOS.map((name) => ({
    name,
    options: options[name],
    accepted: name === 'reused token' || name === 'never-seen tokens',
    path: name === 'never-seen tokens' ? '' : '/mcp', // the never-seen script names its own path
  })),
  {
    name: 'POST, 1 KB not JSON',
    options: { ...options['reused token'], script: 'bench/mcp-call.lua', scriptArg: 'text/plain' },
    path: '/mcp',
    accepted: true,
  },
];

const sidecars = await startSidecars(
  builds.map(({ revision, main }) => ({ name: revision, args: IMAGE_ARGS.map((arg) => (arg === 'dist/main.js' ? main : arg)) })),
  { port: 18703, adminPort: 19703, issuer: issuer.issuer, upstreamUrl },
);
const targets = (scenario: (typeof scenarios)[number]) => sidecars.map((sidecar) => sidecar.target(scenario.path, scenario.options));
// Warm-up, each alone and alike: the accepted scenarios, 3 s each.
for (const target of targets(scenarios[0]!)) await sideBySide([target], 3);
for (const target of targets(scenarios[4]!)) await sideBySide([target], 3);

const rows: RoundRows = new Map();
for (let round = 0; round < ROUNDS; round++) {
  for (const scenario of scenarios) await sideBySideRound(rows, scenario, targets(scenario), SECONDS);
}
for (const sidecar of sidecars) await stop(sidecar.child);
await bench.close();

const lines = [
  `| scenario: revision | req/s × ${revisions[0]} (median of rounds) | × by round | CPU µs a request, side by side (median) |`,
  '|---|---:|---|---:|',
  ...scenarios.flatMap((scenario) =>
    revisions.map((revision) => {
      const row = rows.get(`${scenario.name}: ${revision}`)!;
      return `| ${scenario.name}: ${revision} | ${median(row.ratios).toFixed(3)} | ${row.ratios.map((r) => r.toFixed(2)).join(' ')} | ${median(row.micros).toFixed(1)} |`;
    }),
  ),
];
process.stdout.write(lines.join('\n') + '\n');
