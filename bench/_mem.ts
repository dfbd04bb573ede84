import { writeFileSync } from 'node:fs';
import { startIssuer } from '../test/helpers/issuer.js';
import { OUT, distinctTokens, rssMb, spawnPinned, stop, waitForPort, wrk } from './lib.js';
const issuer = await startIssuer();
const key = await issuer.addKey('RS256', { kid: 'k' });
const file = `${OUT}mem-tokens.txt`;
writeFileSync(file, (await distinctTokens(issuer, key, 40000, 3600)).join('\n') + '\n');
const reused = await issuer.mint({ exp: Math.floor(Date.now() / 1000) + 3600 });
const upstream = spawnPinned(0, ['bench/targets/upstream.mjs'], { PORT: '18300' });
await waitForPort(18300);
for (const [name, flags, env] of [
  ['bare', [], {}], ['default', [], {}], ['semi 4MB', ['--max-semi-space-size=4'], {}], ['semi 8MB', ['--max-semi-space-size=8'], {}], ['semi 2MB', ['--max-semi-space-size=2'], {}], ['default', [], {}], ['semi 4MB', ['--max-semi-space-size=4'], {}],
] as [string, string[], Record<string, string>][]) {
  const script = name === 'bare' ? 'bench/targets/bare-proxy.mjs' : 'dist/main.js';
  const p = spawnPinned(1, [...flags, script], { PORT: '18303', ADMIN_PORT: '19303', HOST: '127.0.0.1', ADMIN_HOST: '127.0.0.1', OIDC_ISSUER: issuer.issuer, OIDC_ALLOWED_AZP: 'coder', UPSTREAM_URL: 'http://127.0.0.1:18300', ...env }, 'inherit');
  await waitForPort(18303);
  const start = rssMb(p.pid!);
  const r = name === 'bare' ? await wrk('http://127.0.0.1:18303/mcp', 8, 50) : await wrk('http://127.0.0.1:18303', 8, 50, { script: 'bench/fresh-tokens.lua', scriptArg: file });
  const mid = rssMb(p.pid!);
  const r2 = await wrk('http://127.0.0.1:18303/mcp', 8, 50, { headers: [`Authorization: Bearer ${reused}`] });
  console.log(name.padEnd(10), 'fresh rps', Math.round(r.rps), 'p99', r.p99.toFixed(2), 'reused rps', Math.round(r2.rps), 'p99', r2.p99.toFixed(2), 'rss start', start.toFixed(0), 'after fresh', mid.toFixed(0), 'after reused', rssMb(p.pid!).toFixed(0));
  await stop(p);
}
await stop(upstream); await issuer.close();
