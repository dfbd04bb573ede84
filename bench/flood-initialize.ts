// npm run bench:flood-initialize: the built sidecar, run as the image runs it with
// MAX_CONNECTIONS=auto (which assumes a 256 MiB pod when no cgroup limit is readable), under a
// flood of large initialize requests from a valid token: FLOOD_CLIENTS connections at once
// (default 64) each sending initialize with a clientInfo name and version of FLOOD_NAME_BYTES
// (default 500,000: the body just under MCP_MAX_BODY_BYTES) until FLOOD_SESSIONS sessions exist
// (default 3000), then a tools/call on each of the last 100 sessions, so their audit lines repeat
// the client. Reports the peak resident set against 256 MiB and the bytes of audit lines written
// a call. FLOOD_MAIN runs another build (e.g. an older revision's dist/main.js) to compare.

import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { spawn } from 'node:child_process';
import { request } from 'undici';
import { startIssuer } from '../test/helpers/issuer.js';
import { IMAGE_ARGS, OUT, buildSidecar, pinned, rssMb, sidecarEnv, spawnPinned, stop, TARGET_NODE, waitForPort } from './lib.js';

const CLIENTS = Number(process.env.FLOOD_CLIENTS ?? 64);
const NAME_BYTES = Number(process.env.FLOOD_NAME_BYTES ?? 500_000);
const SESSIONS = Number(process.env.FLOOD_SESSIONS ?? 3000);
const LIMIT_MIB = 256;
const MAIN = process.env.FLOOD_MAIN;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

if (MAIN === undefined) buildSidecar();
const issuer = await startIssuer();
await issuer.addKey('RS256', { kid: 'flood-key' });
const token = await issuer.mint({ exp: Math.floor(Date.now() / 1000) + 3600 });
const upstreamPort = await freePort();
const upstream = spawnPinned(0, ['bench/targets/session-upstream.mjs'], { PORT: String(upstreamPort) });
await waitForPort(upstreamPort);

const [port, adminPort] = [await freePort(), await freePort()];
const args = MAIN === undefined ? IMAGE_ARGS : [...IMAGE_ARGS.slice(0, -1), MAIN];
// Its stdout (the audit lines) is counted, not kept.
const [command, commandArgs] = pinned(1, TARGET_NODE, args);
const sidecar = spawn(command, commandArgs, {
  env: {
    ...process.env,
    ...sidecarEnv({ port, adminPort, issuer: issuer.issuer, upstreamUrl: `http://127.0.0.1:${upstreamPort}` }),
    MAX_CONNECTIONS: 'auto',
    LOG_LEVEL: 'info',
  },
  stdio: ['ignore', 'pipe', 'inherit'],
});
let logBytes = 0;
sidecar.stdout!.on('data', (chunk: Buffer) => (logBytes += chunk.length));
await waitForPort(port);
const idleMib = rssMb(sidecar.pid!);
let peak = idleMib;
const sampler = setInterval(() => (peak = Math.max(peak, rssMb(sidecar.pid!))), 50);

const big = 'n'.repeat(NAME_BYTES);
const initialize = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: big, version: big } },
});
const url = `http://127.0.0.1:${port}/mcp`;
const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const sessions: string[] = [];
/** Answers by status, and requests that got none by the client's error code (a saturated core drops connects). */
const statuses = new Map<number | string, number>();
const count = (key: number | string) => statuses.set(key, (statuses.get(key) ?? 0) + 1);
const started = performance.now();
await Promise.all(
  Array.from({ length: CLIENTS }, async () => {
    while (sessions.length < SESSIONS) {
      try {
        const res = await request(url, { method: 'POST', headers, body: initialize });
        count(res.statusCode);
        const session = res.headers['mcp-session-id'];
        await res.body.dump();
        if (typeof session === 'string') sessions.push(session);
      } catch (error) {
        count((error as { code?: string }).code ?? 'error');
      }
    }
  }),
);
const floodSeconds = (performance.now() - started) / 1000;
// Calls on the last sessions: each audit line carries the session's client.
const beforeCalls = logBytes;
const call = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'query', arguments: {} } });
for (const session of sessions.slice(-100)) {
  const res = await request(url, {
    method: 'POST',
    headers: { ...headers, 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' },
    body: call,
  });
  await res.body.dump();
}
await new Promise((resolve) => setTimeout(resolve, 500)); // the log's 250 ms flush
const bytesPerCall = (logBytes - beforeCalls) / 100;
clearInterval(sampler);
const settledMib = rssMb(sidecar.pid!);
await stop(sidecar);
await stop(upstream);
await issuer.close();

const row =
  `| ${MAIN ?? 'this tree'} | ${CLIENTS} | ${(NAME_BYTES / 1000).toFixed(0)} KB ×2 | ${sessions.length} in ${floodSeconds.toFixed(1)} s ` +
  `| ${[...statuses].map(([s, n]) => `${s}: ${n}`).join(', ')} | ${idleMib.toFixed(0)} | ${peak.toFixed(0)} | ${settledMib.toFixed(0)} ` +
  `| ${peak < LIMIT_MIB ? 'yes' : '**no**'} | ${(bytesPerCall / 1024).toFixed(1)} KiB |`;
const lines = [
  `Large initialize messages from one valid token, MAX_CONNECTIONS=auto (256 MiB assumed), the image's flags, Node ${process.version} runs the flood.`,
  '',
  '| sidecar | connections at once | clientInfo name, version | sessions created | statuses | RSS idle MiB | RSS peak MiB | RSS after MiB | under 256 MiB | log a call (request + audit line) |',
  '|---|---:|---:|---:|---|---:|---:|---:|---|---:|',
  row,
];
writeFileSync(`${OUT}flood-initialize.md`, lines.join('\n') + '\n');
process.stdout.write(lines.join('\n') + '\n');
process.exit(0);
