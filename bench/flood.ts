// npm run bench:flood: the built sidecar, run as the image runs it, under a flood of hostile
// connections that never authenticate (FLOOD_SOCKETS at once, default 10,000, for FLOOD_SECONDS,
// default 20): a third send 15 KB of headers they never finish, a third send a request without a
// token and wait on the connection, a third connect and say nothing. Every socket the sidecar
// closes is opened again FLOOD_RECONNECT_MS later (default 1000; 1 makes it a volume attack,
// which costs CPU, not memory). Meanwhile a legitimate client opens a new connection with a
// valid token every 100 ms. Reports the sidecar's peak resident set (against the pod's 256 MiB)
// and how the legitimate client fared, for MAX_CONNECTIONS=auto and, to compare, for 8192
// (the cap main had). Prints a markdown table for RESULTS.md.
// Then a flood of rejected requests over TLS: the sidecar with TLS on its proxy port, wrk sending
// requests without a token on FLOOD_TLS_CONNECTIONS keep-alive connections (default 1000) as
// fast as it can for FLOOD_SECONDS, while the legitimate client opens a new TLS connection with
// a valid token every 100 ms; reports its p50 / p99 and the sidecar's peak resident set.
// FLOOD_ONLY=tls runs only that part (FLOOD_TLS_MAX_CONNECTIONS: its MAX_CONNECTIONS, default auto);
// FLOOD_DIST names another build's main.js (to compare).

import { writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { startIssuer } from '../test/helpers/issuer.js';
import { createCa } from '../test/helpers/certificates.js';
import { IMAGE_ARGS, OUT, buildSidecar, rssMb, sidecarEnv, spawnPinned, stop, waitForPort, wrk } from './lib.js';

const SOCKETS = Number(process.env.FLOOD_SOCKETS ?? 10_000);
const SECONDS = Number(process.env.FLOOD_SECONDS ?? 20);
const LIMIT_MIB = 256;
/** How soon a hostile slot opens a new connection when the sidecar closed its last one. */
const RECONNECT_MS = Number(process.env.FLOOD_RECONNECT_MS ?? 1000);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

type Behaviour = 'unfinished headers' | 'rejected, then waits' | 'silent';
const ALL_BEHAVIOURS: Behaviour[] = ['unfinished headers', 'rejected, then waits', 'silent'];
/** FLOOD_ONLY=headers: every socket sends unfinished headers, the costliest to hold (the red team's 310 MiB). */
const BEHAVIOURS: Behaviour[] = process.env.FLOOD_ONLY === 'headers' ? ['unfinished headers'] : ALL_BEHAVIOURS;
const TLS_CONNECTIONS = Number(process.env.FLOOD_TLS_CONNECTIONS ?? 1000);
/** The sidecar measured: this checkout's build, or FLOOD_DIST's main.js. */
const SIDECAR_ARGS = IMAGE_ARGS.map((arg) => (arg === 'dist/main.js' ? (process.env.FLOOD_DIST ?? arg) : arg));
const UNFINISHED = `GET /mcp HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(15_000)}`;

/** One hostile slot: holds a connection its way, and opens a new one whenever the sidecar closes it. */
function hostile(port: number, behaviour: Behaviour, stats: { opened: number; live: Set<Socket> }, running: () => boolean): void {
  if (!running()) return;
  const socket: Socket = connect(port, '127.0.0.1');
  stats.live.add(socket);
  socket.on('connect', () => {
    stats.opened++;
    if (behaviour === 'unfinished headers') socket.write(UNFINISHED);
    if (behaviour === 'rejected, then waits') socket.write('GET /mcp HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
  });
  socket.on('data', () => {});
  socket.on('error', () => {});
  socket.on('close', () => {
    stats.live.delete(socket);
    setTimeout(() => hostile(port, behaviour, stats, running), RECONNECT_MS);
  });
}

/** One legitimate request on a new connection (TLS when `ca` is given): its status, or 0 when the connection failed or timed out (5 s). */
function legitimate(port: number, token: string, ca?: string): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const send = () => socket.write(`GET /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
    const socket = ca === undefined ? connect(port, '127.0.0.1', send) : tlsConnect({ port, host: '127.0.0.1', ca }, send);
    let answer = '';
    const done = () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0), ms: performance.now() - started });
    socket.setTimeout(5000, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', done);
  });
}

async function metric(adminPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'gm'))].reduce((sum, m) => sum + Number(m[1]), 0);
}

buildSidecar();
const issuer = await startIssuer();
await issuer.addKey('RS256', { kid: 'flood-key' });
const token = await issuer.mint({ exp: Math.floor(Date.now() / 1000) + 3600 });
const upstreamPort = await freePort();
const upstream = spawnPinned(0, ['bench/targets/upstream.mjs'], { PORT: String(upstreamPort) });
await waitForPort(upstreamPort);

/** The valid client's p50 and p99 in ms, over the requests that were served. */
function quantiles(results: { status: number; ms: number }[]): string {
  const latencies = results
    .filter((r) => r.status === 200)
    .map((r) => r.ms)
    .sort((a, b) => a - b);
  const p = (q: number) => (latencies.length === 0 ? NaN : latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!);
  return `${p(0.5).toFixed(1)} / ${p(0.99).toFixed(1)}`;
}

const rows: string[] = [];
for (const maxConnections of process.env.FLOOD_ONLY === 'tls' ? [] : ['auto', '8192']) {
  const [port, adminPort] = [await freePort(), await freePort()];
  const sidecar = spawnPinned(
    1,
    SIDECAR_ARGS,
    {
      ...sidecarEnv({ port, adminPort, issuer: issuer.issuer, upstreamUrl: `http://127.0.0.1:${upstreamPort}` }),
      MAX_CONNECTIONS: maxConnections,
      LOG_LEVEL: 'warn',
    },
    'inherit',
  );
  await waitForPort(port);
  const idleMib = rssMb(sidecar.pid!);
  let peak = idleMib;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMb(sidecar.pid!))), 100);

  const stats = { opened: 0, live: new Set<Socket>() };
  const endsAt = Date.now() + SECONDS * 1000;
  const running = () => Date.now() < endsAt;
  for (let i = 0; i < SOCKETS; i++) {
    hostile(port, BEHAVIOURS[i % BEHAVIOURS.length]!, stats, running);
    // Open them in bursts of 500, so the flood builds up in about a second.
    if (i % 500 === 499) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const results: { status: number; ms: number }[] = [];
  while (running()) {
    results.push(await legitimate(port, token));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  clearInterval(sampler);
  for (const socket of stats.live) socket.destroy();
  const evicted = await metric(adminPort, 'mcp_auth_connections_evicted_total');
  const refused = await metric(adminPort, 'mcp_auth_http_refused_total');
  const rejected = await metric(adminPort, 'mcp_auth_rejected_total');
  process.stderr.write(
    `rejected (401) ${rejected}; ${(await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text())
      .split('\n')
      .filter((l) => l.startsWith('mcp_auth_http_refused_total{'))
      .join('; ')}\n`,
  );
  await stop(sidecar);

  const served = results.filter((r) => r.status === 200);
  const row =
    `| ${maxConnections} | ${SOCKETS} | ${stats.opened} | ${idleMib.toFixed(0)} | ${peak.toFixed(0)} | ${peak < LIMIT_MIB ? 'yes' : '**no**'} ` +
    `| ${served.length}/${results.length} | ${quantiles(results)} | ${evicted} | ${refused} |`;
  process.stderr.write(`${row}\n`);
  rows.push(row);
  // Let the hostile sockets of this round close before the next starts.
  await new Promise((resolve) => setTimeout(resolve, 1000));
}

// Rejected requests over TLS, on connections the flood keeps.
const tlsRows: string[] = [];
if (process.env.FLOOD_ONLY === undefined || process.env.FLOOD_ONLY === 'tls') {
  const ca = createCa('openssl');
  const leaf = ca.issue('01');
  const [certFile, keyFile] = [`${OUT}flood-cert.pem`, `${OUT}flood-key.pem`];
  writeFileSync(certFile, leaf.cert);
  writeFileSync(keyFile, leaf.key);
  const [port, adminPort] = [await freePort(), await freePort()];
  const sidecar = spawnPinned(
    1,
    SIDECAR_ARGS,
    {
      ...sidecarEnv({ port, adminPort, issuer: issuer.issuer, upstreamUrl: `http://127.0.0.1:${upstreamPort}` }),
      TLS_CERT_FILE: certFile,
      TLS_KEY_FILE: keyFile,
      MAX_CONNECTIONS: process.env.FLOOD_TLS_MAX_CONNECTIONS ?? 'auto',
      LOG_LEVEL: 'warn',
    },
    'inherit',
  );
  await waitForPort(port);
  const idleMib = rssMb(sidecar.pid!);
  let peak = idleMib;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMb(sidecar.pid!))), 100);
  const endsAt = Date.now() + SECONDS * 1000;
  const flood = wrk(`https://127.0.0.1:${port}/mcp`, SECONDS, TLS_CONNECTIONS);
  const results: { status: number; ms: number }[] = [];
  while (Date.now() < endsAt) {
    results.push(await legitimate(port, token, ca.cert));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const rejected = await flood;
  clearInterval(sampler);
  await stop(sidecar);
  ca.close();
  const served = results.filter((r) => r.status === 200);
  const row =
    `| ${TLS_CONNECTIONS} | ${Math.round(rejected.rps)} | ${rejected.requests - rejected.non2xx} | ${idleMib.toFixed(0)} | ${peak.toFixed(0)} | ` +
    `${peak < LIMIT_MIB ? 'yes' : '**no**'} | ${served.length}/${results.length} | ${quantiles(results)} |`;
  process.stderr.write(`${row}\n`);
  tlsRows.push(row);
}
await stop(upstream);
await issuer.close();

const lines = [
  `Flood of ${SOCKETS} hostile sockets (${BEHAVIOURS.join(', ')}) for ${SECONDS} s, reconnecting ${RECONNECT_MS} ms after a close, sidecar ${SIDECAR_ARGS.at(-1)} with the image's flags (${IMAGE_ARGS.slice(0, -1).join(' ')}), Node ${process.version} runs the flood.`,
  '',
  '| MAX_CONNECTIONS | hostile sockets at once | hostile connections opened | RSS idle MiB | RSS peak MiB | under 256 MiB | valid client served | its ms p50 / p99 | evicted | refused (408/431/400) |',
  '|---|---:|---:|---:|---:|---|---:|---:|---:|---:|',
  ...rows,
  '',
  `Rejected requests over TLS: wrk -c${TLS_CONNECTIONS} without a token for ${SECONDS} s (P-256 certificate), the valid client on a new TLS connection every 100 ms.`,
  '',
  '| flood connections | rejected req/s | answered 2xx (0 expected) | RSS idle MiB | RSS peak MiB | under 256 MiB | valid client served | its ms p50 / p99 |',
  '|---:|---:|---:|---:|---:|---|---:|---:|',
  ...tlsRows,
];
writeFileSync(`${OUT}flood.md`, lines.join('\n') + '\n');
process.stdout.write(lines.join('\n') + '\n');
// The flood's sockets may still be closing: do not wait for them.
process.exit(0);
