// npm run soak: mixed traffic against the built sidecar for SOAK_SECONDS (default 60; 600 for
// the real soak), sampling its resident memory every 5 s, with SOAK_TOKENS (default 100000)
// distinct tokens cycling through. Prints a markdown summary for RESULTS.md.

import { execFile, execFileSync, spawn } from 'node:child_process';
import { KeyObject, randomUUID, sign } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { startIssuer } from '../test/helpers/issuer.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
const TOKENS = Number(process.env.SOAK_TOKENS ?? 100_000);
const PORTS = { upstream: 18100, sidecar: 18103, admin: 19103 };
const OUT = new URL('./out/', import.meta.url).pathname;
const run = promisify(execFile);
mkdirSync(OUT, { recursive: true });

const waitForPort = (port: number) => new Promise<void>((resolve, reject) => {
  const deadline = Date.now() + 20_000;
  const attempt = () => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve(); });
    socket.once('error', () => (Date.now() > deadline ? reject(new Error(`port ${port}`)) : setTimeout(attempt, 50)));
  };
  attempt();
});
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
const issuer = await startIssuer();
// ES256 keeps minting 100,000 tokens quick; the cache bound does not depend on the algorithm.
const key = await issuer.addKey('ES256', { kid: 'soak-key' });
const template = JSON.parse(Buffer.from((await issuer.mint({ exp: Math.floor(Date.now() / 1000) + 3 * 3600 }, { key })).split('.')[1]!, 'base64url').toString());
const header = Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid: key.kid })).toString('base64url');
const privateKey = KeyObject.from(key.privateKey as never);
const tokens = await Promise.all(Array.from({ length: TOKENS }, (_, n) => {
  const input = `${header}.${Buffer.from(JSON.stringify({ ...template, jti: randomUUID(), n })).toString('base64url')}`;
  return new Promise<string>((resolve, reject) => sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }, (err, sig) => (err ? reject(err) : resolve(`${input}.${sig.toString('base64url')}`))));
}));
const file = `${OUT}soak-tokens.txt`;
writeFileSync(file, tokens.join('\n') + '\n');

const upstream = spawn('taskset', ['-c', '0', process.execPath, 'bench/targets/upstream.mjs'], { env: { ...process.env, PORT: String(PORTS.upstream) }, stdio: 'ignore' });
const sidecar = spawn('taskset', ['-c', '1', process.execPath, 'dist/main.js'], {
  env: {
    ...process.env, PORT: String(PORTS.sidecar), ADMIN_PORT: String(PORTS.admin), HOST: '127.0.0.1', ADMIN_HOST: '127.0.0.1',
    OIDC_ISSUER: issuer.issuer, OIDC_ALLOWED_AZP: 'coder', UPSTREAM_URL: `http://127.0.0.1:${PORTS.upstream}`, NODE_ENV: 'production',
  },
  stdio: 'ignore',
});
await Promise.all([waitForPort(PORTS.upstream), waitForPort(PORTS.sidecar)]);

const samples: [number, number][] = [[0, rssMb(sidecar.pid!)]];
const started = Date.now();
const timer = setInterval(() => samples.push([Math.round((Date.now() - started) / 1000), rssMb(sidecar.pid!)]), 5000);
const { stdout } = await run('taskset', ['-c', '0', 'wrk', '-t1', '-c50', `-d${SECONDS}s`, '-s', 'bench/mixed.lua', `http://127.0.0.1:${PORTS.sidecar}/mcp`, '--', file]);
clearInterval(timer);
samples.push([SECONDS, rssMb(sidecar.pid!)]);
const requests = Number(/(\d+) requests in/.exec(stdout)![1]);
const metrics = await (await fetch(`http://127.0.0.1:${PORTS.admin}/metrics`)).text();
const metric = (name: string) => metrics.split('\n').find((l) => l.startsWith(name))?.split(' ')[1];

sidecar.kill('SIGTERM');
upstream.kill();
await issuer.close();

const rss = samples.map(([, mb]) => mb);
const afterWarmup = rss.slice(Math.min(2, rss.length - 1));
const lines = [
  `Soak: ${SECONDS} s of mixed traffic (6/10 never-seen tokens cycling through ${TOKENS} distinct ones, 2/10 one reused token, 1/10 no token, 1/10 bad signature), wrk -t1 -c50.`,
  `Requests: ${requests}; accepted ${metric('mcp_auth_accepted_total')}; verdict cache hits ${metric('mcp_auth_verdict_cache_total{result="hit"}')}, misses ${metric('mcp_auth_verdict_cache_total{result="miss"}')}.`,
  `RSS MB: start ${rss[0]!.toFixed(0)}, peak ${Math.max(...rss).toFixed(0)}, end ${rss.at(-1)!.toFixed(0)}; after warm-up min ${Math.min(...afterWarmup).toFixed(0)} / max ${Math.max(...afterWarmup).toFixed(0)}.`,
  `Samples (s: MB): ${samples.map(([t, mb]) => `${t}: ${mb.toFixed(0)}`).join(', ')}`,
];
writeFileSync(`${OUT}soak.md`, lines.join('\n') + '\n');
process.stdout.write(lines.join('\n') + '\n');
