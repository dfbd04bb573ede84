import { afterEach, describe, expect, it } from 'vitest';
import { connect, type Socket } from 'node:net';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { ConnectionGuard, derivedMaxConnections, memoryLimitBytes } from '../../src/http/connections.js';

const MiB = 1024 * 1024;

/** A socket to the sidecar, once connected. */
function open(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => resolve(socket));
    socket.on('error', reject);
  });
}

/** Resolves when the socket closes, with what it received; bounded. */
function closed(socket: Socket, timeoutMs = 10_000): Promise<string> {
  let answer = '';
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
  return new Promise((resolve, reject) => {
    if (socket.closed) resolve(answer);
    const timer = setTimeout(() => reject(new Error('socket stayed open')), timeoutMs);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answer);
    });
    socket.on('error', () => {});
  });
}

/** Sends one request on an open socket and resolves with the response head and body read so far (one response). */
function exchange(socket: Socket, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = '';
    const timer = setTimeout(() => reject(new Error('no answer')), 10_000);
    const onData = (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      const head = answer.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(answer)?.[1];
      if (head !== -1 && length !== undefined && answer.length >= head + 4 + Number(length)) {
        clearTimeout(timer);
        socket.off('data', onData);
        resolve(answer);
      }
    };
    socket.on('data', onData);
    socket.write(data);
  });
}

/** A header's value in a response's head, lower-cased name. */
function headerOf(answer: string, name: string): string | undefined {
  const head = answer.slice(0, answer.indexOf('\r\n\r\n'));
  return new RegExp(`^${name}: (.*)$`, 'im').exec(head)?.[1]?.trim();
}

describe('a flood of connections that never authenticate', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  const sockets: Socket[] = [];

  async function start(limits: { maxConnections: number; unauthenticatedIdleMs?: number; rejectionsPerConnection?: number }) {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream), { clientLimits: { unauthenticatedIdleMs: 60_000, ...limits } });
  }
  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  it('keeps a connection that never carried an accepted request open across rejections while there is headroom', async () => {
    await start({ maxConnections: 50 });
    const socket = await open(sidecar.url);
    sockets.push(socket);
    const token = await issuer.mint();
    const rejected = [
      'GET /mcp HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-a-jwt\r\n\r\n',
      `GET /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token.slice(0, -8)}AAAAAAAA\r\n\r\n`,
      'GET /.well-known/oauth-protected-resource HTTP/1.1\r\nHost: x\r\n\r\n',
    ];
    for (const request of rejected) {
      const answer = await exchange(socket, request);
      expect(answer).toMatch(/^HTTP\/1\.1 (401|200)/);
      expect(headerOf(answer, 'connection')).toBe('keep-alive');
      // The idle time it really has, not KEEP_ALIVE_TIMEOUT_SECONDS.
      expect(headerOf(answer, 'keep-alive')).toBe('timeout=60');
    }
    expect(await exchange(socket, `GET /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 200/);
  });

  it('keeps the short idle time of a connection kept after a rejection or the metadata', async () => {
    await start({ maxConnections: 50, unauthenticatedIdleMs: 400 });
    for (const request of [
      'GET /mcp HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /.well-known/oauth-protected-resource HTTP/1.1\r\nHost: x\r\n\r\n',
    ]) {
      const socket = await open(sidecar.url);
      sockets.push(socket);
      const answer = await exchange(socket, request);
      expect(headerOf(answer, 'connection')).toBe('keep-alive');
      const answeredAt = Date.now();
      // Closed by the sidecar after its idle time, long before Node's 72 s keep-alive time.
      await closed(socket, 5000);
      expect(Date.now() - answeredAt).toBeGreaterThanOrEqual(300);
    }
  });

  it('closes a connection that never carried an accepted request at its rejectionsPerConnection-th rejection', async () => {
    await start({ maxConnections: 50, rejectionsPerConnection: 3 });
    const socket = await open(sidecar.url);
    sockets.push(socket);
    for (let i = 0; i < 2; i++) {
      expect(headerOf(await exchange(socket, 'GET /mcp HTTP/1.1\r\nHost: x\r\n\r\n'), 'connection')).toBe('keep-alive');
    }
    const done = closed(socket);
    socket.write('GET /mcp HTTP/1.1\r\nHost: x\r\n\r\n');
    const answer = await done;
    expect(answer).toMatch(/^HTTP\/1\.1 401/);
    expect(headerOf(answer, 'connection')).toBe('close');
  });

  it('closes it after a rejection once more than half of MAX_CONNECTIONS are open', async () => {
    await start({ maxConnections: 10 });
    const socket = await open(sidecar.url);
    sockets.push(socket);
    expect(headerOf(await exchange(socket, 'GET /mcp HTTP/1.1\r\nHost: x\r\n\r\n'), 'connection')).toBe('keep-alive');
    // Five silent connections more and a new one rejected: seven open, over half of ten. (The
    // sidecar accepts connections in order: by the new one's answer, it has them all.)
    for (let i = 0; i < 5; i++) sockets.push(await open(sidecar.url));
    const newcomer = await open(sidecar.url);
    sockets.push(newcomer);
    const newcomerClosed = closed(newcomer);
    newcomer.write('GET /mcp HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(headerOf(await newcomerClosed, 'connection')).toBe('close');
    const done = closed(socket);
    socket.write('GET /mcp HTTP/1.1\r\nHost: x\r\n\r\n');
    const answer = await done;
    expect(answer).toMatch(/^HTTP\/1\.1 401/);
    expect(headerOf(answer, 'connection')).toBe('close');
  });

  it('reads and drops a small body of a rejected request to keep the connection, and closes it for a large or chunked one', async () => {
    await start({ maxConnections: 50 });
    const token = await issuer.mint();
    const small = await open(sidecar.url);
    sockets.push(small);
    const body = '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}';
    const answer = await exchange(
      small,
      `POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 401/);
    expect(headerOf(answer, 'connection')).toBe('keep-alive');
    // The next request on it is read from where the body ended.
    expect(await exchange(small, `GET /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 200/);
    expect(upstream.seen).toHaveLength(1);

    for (const head of [`Content-Length: ${64 * 1024 + 1}`, 'Transfer-Encoding: chunked']) {
      const large = await open(sidecar.url);
      sockets.push(large);
      const done = closed(large);
      large.write(`POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${head}\r\n\r\n`);
      const refused = await done;
      expect(refused).toMatch(/^HTTP\/1\.1 401/);
      expect(headerOf(refused, 'connection')).toBe('close');
    }
  });

  it('keeps an authenticated connection after a later rejection (a token that expired on the way)', async () => {
    await start({ maxConnections: 50 });
    const socket = await open(sidecar.url);
    sockets.push(socket);
    const token = await issuer.mint();
    expect(await exchange(socket, `GET /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 200/);
    const rejected = await exchange(socket, 'GET /mcp HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(rejected).toMatch(/^HTTP\/1\.1 401/);
    expect(rejected.toLowerCase()).not.toContain('connection: close');
    expect(await exchange(socket, `GET /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 200/);
  });

  it('serves a new client with a valid token while the connection limit is full of hostile sockets', async () => {
    await start({ maxConnections: 40 });
    // Every kind of hostile connection at once: silent, unfinished headers, and a request that
    // got its 401 (whose connection is closed for it under this pressure).
    for (let i = 0; i < 120; i++) {
      const socket = await open(sidecar.url).catch(() => undefined);
      if (socket === undefined) continue;
      socket.on('error', () => {});
      sockets.push(socket);
      if (i % 3 === 1) socket.write(`GET /mcp HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(8000)}`);
      if (i % 3 === 2) socket.write('GET /mcp HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    }
    const token = await issuer.mint();
    for (let i = 0; i < 5; i++) {
      const res = await request(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.statusCode).toBe(200);
      await res.body.text();
    }
    const metrics = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
    expect(Number(/mcp_auth_connections_evicted_total (\d+)/.exec(metrics)?.[1])).toBeGreaterThan(0);
  });

  it('never evicts authenticated connections: at the limit with only those, a newcomer is refused', async () => {
    await start({ maxConnections: 10 });
    const token = await issuer.mint();
    for (let i = 0; i < 10; i++) {
      const socket = await open(sidecar.url);
      sockets.push(socket);
      expect(await exchange(socket, `GET /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 200/);
    }
    const extra = await open(sidecar.url);
    const answer = await closed(extra);
    expect(answer).toBe('');
    // The authenticated ones are all still served.
    for (const socket of sockets) {
      expect(await exchange(socket, `GET /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 200/);
    }
  });

  it('closes a silent connection that never authenticated after UNAUTHENTICATED_IDLE_SECONDS', async () => {
    await start({ maxConnections: 50, unauthenticatedIdleMs: 300 });
    const socket = await open(sidecar.url);
    sockets.push(socket);
    const started = Date.now();
    await closed(socket, 5000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });
});

describe('the connection guard behind TLS', () => {
  it('tracks the TLS socket a request arrives on: an authenticated TLS connection leaves probation and is not cut', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'guard-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        '/CN=127.0.0.1',
        '-days',
        '1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    const server = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) });
    const guard = new ConnectionGuard(
      server as never,
      {
        headersTimeoutMs: 5000,
        requestTimeoutMs: 10_000,
        timeoutCheckMs: 1000,
        maxConnections: 10,
        maxHeaderBytes: 16_384,
        unauthenticatedIdleMs: 300,
        keepAliveTimeoutMs: 5000,
        rejectionsPerConnection: 1000,
      },
      () => {},
    );
    // What the authenticate hook does for an accepted request, then a silent stream.
    server.on('request', (req, res) => {
      guard.authenticated(req.socket);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: 1\n\n');
      setTimeout(() => res.end('data: 2\n\n'), 800);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const socket = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () =>
          socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
        );
        let answer = '';
        socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
        socket.on('close', () => resolve(answer));
        socket.on('error', reject);
      });
      // The stream was silent for longer than the unauthenticated idle time, and outlived it.
      expect(body).toContain('data: 2');
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('MAX_CONNECTIONS=auto', () => {
  it('fits the connections in the memory limit beside the sidecar', () => {
    // 256 MiB pod: (256 - 128) MiB at 40 KiB a connection with 16 KiB headers.
    expect(derivedMaxConnections(16_384, 256 * MiB)).toBe(3276);
    expect(derivedMaxConnections(16_384, 1024 * MiB)).toBe(8192);
    expect(derivedMaxConnections(65_536, 128 * MiB)).toBe(64);
  });

  it('reads the cgroup limit, and none when it says max', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const dir = mkdtempSync('/tmp/cgroup-');
    writeFileSync(`${dir}/memory.max`, '268435456\n');
    writeFileSync(`${dir}/unlimited`, 'max\n');
    expect(memoryLimitBytes([`${dir}/absent`, `${dir}/memory.max`])).toBe(256 * MiB);
    expect(memoryLimitBytes([`${dir}/unlimited`])).toBeUndefined();
  });
});
