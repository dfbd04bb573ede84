// npm run bench:mcp: what reading MCP costs. tools/call POSTs with a 1 KB body, answered as JSON
// and as an event stream with a progress event, through sidecars that differ in one setting,
// loaded side by side on one core (lib.ts sideBySide): the ratio of their req/s is the ratio of
// their costs, whatever the VM does meanwhile. BENCH_ROUNDS (default 5) of BENCH_SECONDS
// (default 5) for each pair; BENCH_PAIRS limits the pairs. Goals: AUDIT=on >= 0.9x AUDIT=off;
// the example tool policy >= 0.85x the same sidecar without one; audit and policy together
// >= 0.9x the same sidecar with neither; MCP 2026-07-28 calls read (headers
// checked against the body), audited and judged by the example policy >= 0.9x the same calls
// forwarded unread. The control pair (two identical sidecars) shows how far apart the method
// puts equals.

import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import {
  PINNING,
  TARGET_NODE,
  buildSidecar,
  median,
  sideBySide,
  spawnPinned,
  startSidecars,
  stop,
  waitForPort,
  type SideBySideTarget,
} from './lib.js';
import { startIssuer } from '../test/helpers/issuer.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = 50;
const UPSTREAM_PORT = 18800;
const POLICY = 'examples/policy/datastore.yaml';

buildSidecar();
const issuer = await startIssuer();
await issuer.addKey('RS256', { kid: 'mcp-bench' });
// keycloakClaims: alice of /alpha, whom the example policy lets query alpha_* tables (mcp-call.lua's call).
const token = await issuer.mint({ exp: Math.floor(Date.now() / 1000) + 3600 });
const upstream = spawnPinned(0, ['bench/targets/mcp-upstream.mjs'], { PORT: String(UPSTREAM_PORT) });
await waitForPort(UPSTREAM_PORT);
const upstreamUrl = `http://127.0.0.1:${UPSTREAM_PORT}`;

const configurations: Record<string, Record<string, string>> = {
  'AUDIT=off': { AUDIT: 'off' },
  'AUDIT=off (twin)': { AUDIT: 'off' },
  'AUDIT=on': { AUDIT: 'on' },
  'AUDIT=on + policy': { AUDIT: 'on', POLICY_FILE: POLICY },
  '2026-07-28: AUDIT=on + policy': { AUDIT: 'on', POLICY_FILE: POLICY },
  // No guard: a body that is not JSON is forwarded as it comes, not read.
  '2026-07-28: unread': { AUDIT: 'on' },
  '2026-07-28: AUDIT=off': { AUDIT: 'off' },
};
const paths = [
  { name: 'JSON', path: '/mcp' },
  { name: 'SSE', path: '/mcp-sse' },
];
interface Pair {
  measured: string;
  against: string;
  goal: number | undefined;
  what: string;
  /** The wrk script, and the Content-Type each side sends (text/plain: a body the sidecar forwards unread). */
  script?: string;
  contentTypes?: [string, string];
  /** A script for each side, where they differ. */
  scripts?: [string, string];
}
const allPairs: Pair[] = [
  { measured: 'AUDIT=off (twin)', against: 'AUDIT=off', goal: undefined, what: 'control: the same sidecar twice' },
  { measured: 'AUDIT=on', against: 'AUDIT=off', goal: 0.9, what: 'audit lines' },
  { measured: 'AUDIT=on + policy', against: 'AUDIT=on', goal: 0.85, what: `tool policy ${POLICY} ` },
  { measured: 'AUDIT=on + policy', against: 'AUDIT=off', goal: 0.9, what: `audit lines and tool policy ${POLICY}, against neither` },
  {
    measured: '2026-07-28: AUDIT=on + policy',
    against: '2026-07-28: unread',
    goal: 0.9,
    what: `MCP 2026-07-28 calls, headers checked, audited, judged by ${POLICY}, against the same calls forwarded unread`,
    script: 'bench/mcp-2026-call.lua',
    contentTypes: ['application/json', 'text/plain'],
  },
  // Where the difference to unread goes: reading alone (the metrics need every outcome), and what
  // the 2026-07-28 checks add to the same calls sent the 2025 way.
  {
    measured: '2026-07-28: AUDIT=off',
    against: '2026-07-28: unread',
    goal: undefined,
    what: 'MCP 2026-07-28 calls read (headers checked, outcomes counted), against the same calls forwarded unread',
    script: 'bench/mcp-2026-call.lua',
    contentTypes: ['application/json', 'text/plain'],
  },
  {
    measured: '2026-07-28: AUDIT=on + policy',
    against: 'AUDIT=on + policy',
    goal: undefined,
    what: 'MCP 2026-07-28 calls against the same calls as 2025-11-25 sends them, both audited and judged',
    script: 'bench/mcp-2026-call.lua',
    contentTypes: ['application/json', 'application/json'],
    scripts: ['bench/mcp-2026-call.lua', 'bench/mcp-call.lua'],
  },
];
// BENCH_PAIRS: the measured sides to run (comma-separated); default all.
const only = process.env.BENCH_PAIRS?.split(',');
const pairs =
  only === undefined
    ? allPairs
    : allPairs.filter((pair) => only.includes(pair.measured) || only.includes(`${pair.measured} against ${pair.against}`));
const body = (id: number) =>
  JSON.stringify({
    jsonrpc: '2.0',
    id,
    method: 'tools/call',
    params: { name: 'query', arguments: { table: 'alpha_orders', sql: 'a'.repeat(900), limit: 100 } },
  });
const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const body2026 = (id: number) =>
  JSON.stringify({
    jsonrpc: '2.0',
    id,
    method: 'tools/call',
    params: {
      name: 'query',
      arguments: { table: 'alpha_orders', sql: 'a'.repeat(800), limit: 100 },
      _meta: {
        'io.modelcontextprotocol/protocolVersion': '2026-07-28',
        'io.modelcontextprotocol/clientInfo': { name: 'bench', version: '1.0.0' },
        'io.modelcontextprotocol/clientCapabilities': {},
      },
    },
  });
const headers2026 = { ...headers, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'query' };

interface Rounds {
  ratios: number[];
  rps: [number[], number[]];
  micros: [number[], number[]];
}
const results = new Map<string, Rounds>();
// Each pair gets two new sidecars with the same history (a sidecar that served more requests
// has a larger heap and fewer collections: reused across pairs, the busier one won by ~4 %).
for (const pair of pairs) {
  const sidecars = await startSidecars(
    [pair.measured, pair.against].map((name) => ({ name, env: configurations[name] })),
    { port: 18803, adminPort: 19803, issuer: issuer.issuer, upstreamUrl },
  );
  // Every sidecar must answer the call with its result: a denial (HTTP 200 too) would measure nothing.
  for (const [i, { name, port }] of sidecars.entries()) {
    const modern = (pair.scripts?.[i] ?? pair.script) === 'bench/mcp-2026-call.lua';
    const sent = modern ? { ...headers2026, 'content-type': pair.contentTypes![i]! } : headers;
    const response = await fetch(`http://127.0.0.1:${port}/mcp`, { method: 'POST', headers: sent, body: modern ? body2026(1) : body(1) });
    const answer = (await response.json()) as { result?: unknown };
    if (response.status !== 200 || answer.result === undefined)
      throw new Error(`${name} did not answer the bench's tools/call with a result: ${JSON.stringify(answer)}`);
  }
  const target = (i: number, path: string): SideBySideTarget =>
    sidecars[i]!.target(path, {
      headers: [`Authorization: Bearer ${token}`],
      script: pair.scripts?.[i] ?? pair.script ?? 'bench/mcp-call.lua',
      scriptArg: pair.contentTypes?.[i] ?? 'application/json',
    });
  // Warm-up, each alone (its JIT and pools), both paths: a cold sidecar costs twice as much.
  for (const i of [0, 1]) for (const { path } of paths) await sideBySide([target(i, path)], 3, CONNECTIONS);
  for (let round = 0; round < ROUNDS; round++) {
    for (const { name: pathName, path } of paths) {
      const [measured, against] = await sideBySide([target(0, path), target(1, path)], SECONDS, CONNECTIONS);
      for (const [name, result] of [
        [pair.measured, measured!],
        [pair.against, against!],
      ] as const) {
        if (result.non2xx > 0) throw new Error(`${name} ${pathName}: ${result.non2xx} responses not 2xx`);
      }
      const key = `${pathName}: ${pair.measured} against ${pair.against}`;
      const entry = results.get(key) ?? { ratios: [], rps: [[], []], micros: [[], []] };
      entry.ratios.push(measured!.rps / against!.rps);
      entry.rps[0].push(measured!.rps);
      entry.rps[1].push(against!.rps);
      entry.micros[0].push(measured!.micros);
      entry.micros[1].push(against!.micros);
      results.set(key, entry);
      process.stderr.write(
        `${key}: ${measured!.rps.toFixed(0)} / ${against!.rps.toFixed(0)} req/s = ${(measured!.rps / against!.rps).toFixed(3)}\n`,
      );
    }
  }
  for (const sidecar of sidecars) await stop(sidecar.child);
}
await stop(upstream);
await issuer.close();

const lines = [
  '| tools/call answered as: measured against | req/s side by side (medians) | × (median of rounds) | goal | × by round | CPU µs a request (medians) |',
  '|---|---:|---:|---:|---|---:|',
  ...paths.flatMap(({ name: pathName }) =>
    pairs.map((pair) => {
      const entry = results.get(`${pathName}: ${pair.measured} against ${pair.against}`)!;
      const ratio = median(entry.ratios);
      const goal = pair.goal === undefined ? '' : `${pair.goal} ${ratio >= pair.goal ? 'met' : '**not met**'}`;
      return `| ${pathName}: ${pair.measured} against ${pair.against} (${pair.what}) | ${median(entry.rps[0]).toFixed(0)} / ${median(entry.rps[1]).toFixed(0)} | ${ratio.toFixed(3)} | ${goal} | ${entry.ratios.map((r) => r.toFixed(2)).join(' ')} | ${median(entry.micros[0]).toFixed(0)} / ${median(entry.micros[1]).toFixed(0)} |`;
    }),
  ),
  '',
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${execFileSync(TARGET_NODE, ['--version'], { encoding: 'utf8' }).trim()}, two wrk -t1 -c${CONNECTIONS} -d${SECONDS}s at once, ${ROUNDS} rounds, ${PINNING} (both sidecars of a pair on core 1, sharing it); audit lines go to the sidecar's stdout (/dev/null here).`,
];
console.log(lines.join('\n'));
