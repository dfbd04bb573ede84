// npm run profile -- SCENARIO: the built sidecar under `node --cpu-prof` while wrk sends one
// scenario (reused, fresh, none, malformed, bad, unknown, expired, sse; mcp and mcp-sse: bench:mcp's
// tools/call POSTs answered as JSON or as an event stream, with AUDIT, POLICY_FILE and OTEL_* passed
// on to the sidecar; mcp-2026: the same calls as MCP 2026-07-28 sends them, answered as JSON)
// for PROFILE_SECONDS (default 6); prints the functions with the most self time. The
// .cpuprofile stays in bench/out/profiles/ for Chrome DevTools.

import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { startIssuer } from '../test/helpers/issuer.js';
import { IMAGE_ARGS, OUT, buildSidecar, distinctTokens, sidecarEnv, spawnPinned, stop, waitForPort, wrk } from './lib.js';

const SCENARIOS = ['reused', 'fresh', 'none', 'malformed', 'bad', 'unknown', 'expired', 'sse', 'mcp', 'mcp-sse', 'mcp-2026'] as const;
const scenario = (process.argv[2] ?? 'reused') as (typeof SCENARIOS)[number];
if (!SCENARIOS.includes(scenario)) throw new Error(`scenario must be one of ${SCENARIOS.join(', ')}`);
const SECONDS = Number(process.env.PROFILE_SECONDS ?? 6);
const PORTS = { upstream: 18200, sidecar: 18203, admin: 19203 };
const PROFILES = `${OUT}profiles/`;

buildSidecar();
rmSync(PROFILES, { recursive: true, force: true });
const issuer = await startIssuer();
const key = await issuer.addKey('RS256', { kid: 'profile-key' });
const token = await issuer.mint({ exp: Math.floor(Date.now() / 1000) + 3600 });
// Tokens first, so that the profile covers the load and little idle time.
const tokenFile = `${OUT}profile-tokens.txt`;
if (scenario === 'fresh') writeFileSync(tokenFile, (await distinctTokens(issuer, key, 40_000, 3600)).join('\n') + '\n');
const mcp = scenario.startsWith('mcp');
const upstream = spawnPinned(0, [mcp ? 'bench/targets/mcp-upstream.mjs' : 'bench/targets/upstream.mjs'], { PORT: String(PORTS.upstream) });
const sidecar = spawnPinned(
  1,
  ['--cpu-prof', `--cpu-prof-dir=${PROFILES}`, ...IMAGE_ARGS],
  {
    ...sidecarEnv({
      port: PORTS.sidecar,
      adminPort: PORTS.admin,
      issuer: issuer.issuer,
      upstreamUrl: `http://127.0.0.1:${PORTS.upstream}`,
    }),
    ...(process.env.AUDIT === undefined ? {} : { AUDIT: process.env.AUDIT }),
    ...(process.env.POLICY_FILE === undefined ? {} : { POLICY_FILE: process.env.POLICY_FILE }),
    // Tracing: OTEL_EXPORTER_OTLP_ENDPOINT and the rest (e.g. bench/targets/otlp-sink.mjs's address).
    ...Object.fromEntries(Object.entries(process.env).filter(([name]) => name.startsWith('OTEL_'))),
  },
  'inherit',
);
await Promise.all([waitForPort(PORTS.upstream), waitForPort(PORTS.sidecar)]);

const url = `http://127.0.0.1:${PORTS.sidecar}`;
const auth = [`Authorization: Bearer ${token}`];
if (scenario === 'fresh') {
  await wrk(url, SECONDS, 50, { script: 'bench/fresh-tokens.lua', scriptArg: tokenFile });
} else if (mcp) {
  const modern = scenario === 'mcp-2026';
  await wrk(`${url}/${modern ? 'mcp' : scenario}`, SECONDS, 50, {
    headers: auth,
    script: modern ? 'bench/mcp-2026-call.lua' : 'bench/mcp-call.lua',
    scriptArg: process.env.PROFILE_CONTENT_TYPE ?? 'application/json',
  });
} else {
  const unknownKid = `Authorization: Bearer ${await issuer.mint({}, { header: { kid: 'not-in-the-set' } })}`;
  const expired = `Authorization: Bearer ${await issuer.mint({ exp: Math.floor(Date.now() / 1000) - 3600 })}`;
  const headers = {
    reused: auth,
    none: [],
    // Not a compact JWS: refused before any key is looked at.
    malformed: [`Authorization: Bearer ${token.replaceAll('.', '_')}`],
    bad: [`Authorization: Bearer ${token.slice(0, -8)}AAAAAAAA`],
    unknown: [unknownKid],
    expired: [expired],
    sse: auth,
  }[scenario as 'reused' | 'none' | 'malformed' | 'bad' | 'unknown' | 'expired' | 'sse'];
  await wrk(`${url}/${scenario === 'sse' ? 'sse' : 'mcp'}`, SECONDS, 50, { headers });
}
await stop(sidecar);
await stop(upstream);
await issuer.close();

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
const file = readdirSync(PROFILES).find((name) => name.endsWith('.cpuprofile'));
if (file === undefined) throw new Error('the sidecar wrote no profile');
const profile = JSON.parse(readFileSync(`${PROFILES}${file}`, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const self = new Map<string, number>();
let total = 0;
profile.samples.forEach((id, i) => {
  const { functionName, url: source, lineNumber } = byId.get(id)!.callFrame;
  const name = `${functionName || '(anonymous)'} ${source.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${lineNumber + 1}`;
  const delta = profile.timeDeltas[i] ?? 0;
  if (functionName === '(idle)') return;
  self.set(name, (self.get(name) ?? 0) + delta);
  total += delta;
});
process.stdout.write(
  `Self time (share of busy time), scenario ${scenario}, ${(total / 1e6).toFixed(1)} s busy (profile: ${PROFILES}${file}):\n`,
);
for (const [name, micros] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.PROFILE_TOP ?? 30))) {
  process.stdout.write(`${((100 * micros) / total).toFixed(1).padStart(5)} %  ${name}\n`);
}
