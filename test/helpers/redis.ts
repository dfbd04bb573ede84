// A real Redis for the rate-limit tests: Debian's redis-server on a free loopback port, no
// persistence, optionally with a password and with TLS only (a throwaway CA and server
// certificate made by openssl). stop()/start() on the same port for outage tests, pause()/resume()
// (SIGSTOP/SIGCONT) for stalls; every wait is bounded.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './tools.js';

export interface TestRedis {
  /** redis:// or rediss:// URL, password included. */
  readonly url: string;
  readonly port: number;
  /** The CA that signed the server certificate (TLS only). */
  readonly caFile: string | undefined;
  /** Stops the server (an outage); start() brings it back on the same port, empty. */
  stop(): Promise<void>;
  /** Freezes the server (SIGSTOP): connections stay open, commands wait, as in a long stall or a failover. */
  pause(): void;
  /** Lets a paused server go on (SIGCONT): it then runs what was sent to it meanwhile. */
  resume(): void;
  start(): Promise<void>;
  close(): Promise<void>;
}

const READY_TIMEOUT_MS = 10_000;

function makeCertificates(dir: string): { ca: string; cert: string; key: string } {
  const ca = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca-key.pem');
  const cert = join(dir, 'server.pem');
  const key = join(dir, 'server-key.pem');
  const csr = join(dir, 'server.csr');
  const ext = join(dir, 'ext.cnf');
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  openssl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=test redis CA',
    '-keyout',
    caKey,
    '-out',
    ca,
  );
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=localhost', '-keyout', key, '-out', csr);
  writeFileSync(ext, 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-days', '1', '-extfile', ext, '-out', cert);
  return { ca, cert, key };
}

export async function startRedis(options: { password?: string; tls?: boolean } = {}): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'test-redis-'));
  const port = await freePort();
  const args = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  let caFile: string | undefined;
  if (options.tls === true) {
    const { ca, cert, key } = makeCertificates(dir);
    caFile = ca;
    args.push(
      '--port',
      '0',
      '--tls-port',
      String(port),
      '--tls-cert-file',
      cert,
      '--tls-key-file',
      key,
      '--tls-ca-cert-file',
      ca,
      '--tls-auth-clients',
      'no',
    );
  } else {
    args.push('--port', String(port));
  }
  if (options.password !== undefined) args.push('--requirepass', options.password);
  let child: ChildProcess | undefined;

  const start = () =>
    new Promise<void>((resolve, reject) => {
      const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      child = proc;
      let output = '';
      const timer = setTimeout(() => fail(new Error(`redis-server not ready within ${READY_TIMEOUT_MS} ms:\n${output}`)), READY_TIMEOUT_MS);
      const fail = (error: Error) => {
        clearTimeout(timer);
        proc.kill('SIGKILL');
        reject(error);
      };
      proc.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.stderr!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      proc.once('exit', (code) => fail(new Error(`redis-server exited (${code}) before it was ready:\n${output}`)));
    });

  const stop = () =>
    new Promise<void>((resolve) => {
      const proc = child;
      child = undefined;
      if (proc === undefined || proc.exitCode !== null) return resolve();
      // A paused server would not handle SIGTERM until it runs again.
      proc.kill('SIGCONT');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      proc.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      proc.kill('SIGTERM');
    });

  await start();
  const auth = options.password !== undefined ? `:${encodeURIComponent(options.password)}@` : '';
  const host = options.tls === true ? 'localhost' : '127.0.0.1';
  return {
    url: `${options.tls === true ? 'rediss' : 'redis'}://${auth}${host}:${port}`,
    port,
    caFile,
    stop,
    start,
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
