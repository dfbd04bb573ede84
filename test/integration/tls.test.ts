import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { Agent, request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { testEnv } from '../helpers/sidecar.js';
import { findTool } from '../helpers/tools.js';
import { createCa, type Leaf, type TestCa } from '../helpers/certificates.js';
import { spawnSidecar, type SidecarProcess } from '../helpers/sidecar-process.js';

const openssl = findTool('openssl');

/**
 * A directory laid out as the kubelet mounts a Secret: tls.crt and tls.key are symlinks into
 * `..data`, itself a symlink to a timestamped directory; an update writes a new directory and
 * renames a new `..data` over the old one (one atomic swap), as cert-manager's renewals arrive.
 */
class SecretMount {
  readonly dir = mkdtempSync(join(tmpdir(), 'sidecar-secret-'));
  private generation = 0;
  readonly certFile = join(this.dir, 'tls.crt');
  readonly keyFile = join(this.dir, 'tls.key');

  constructor(leaf: Pick<Leaf, 'cert' | 'key'>) {
    this.write(leaf);
    symlinkSync('..data/tls.crt', this.certFile);
    symlinkSync('..data/tls.key', this.keyFile);
  }

  write({ cert, key }: Pick<Leaf, 'cert' | 'key'>): void {
    const previous = `..generation-${this.generation}`;
    const next = `..generation-${++this.generation}`;
    mkdirSync(join(this.dir, next));
    writeFileSync(join(this.dir, next, 'tls.crt'), cert);
    writeFileSync(join(this.dir, next, 'tls.key'), key);
    symlinkSync(next, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    rmSync(join(this.dir, previous), { recursive: true, force: true });
  }

  close(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The serial number of the certificate a new TLS connection is served, verified against `ca`. */
function servedSerial(url: string, ca: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), ca, servername: 'localhost' }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.end();
    });
    socket.once('error', reject);
  });
}

/** A verified TLS connection to `url`, once its handshake is done. */
function openTls(url: string, ca: string): Promise<TLSSocket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), ca, servername: 'localhost' }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/**
 * Writes one request and resolves with its response (head and body, by Content-Length) and
 * whether the connection was closed after it; bounded.
 */
function exchange(socket: TLSSocket, data: string): Promise<{ head: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    let answer = '';
    let complete = false;
    const timer = setTimeout(() => reject(new Error(`no answer: ${answer}`)), 10_000);
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve({ head: answer.slice(0, answer.indexOf('\r\n\r\n')), closed });
    };
    const onClose = () => (complete ? finish(true) : reject(new Error(`closed before the answer: ${answer}`)));
    const onData = (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      const end = answer.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(answer)?.[1];
      if (end === -1 || length === undefined || answer.length < end + 4 + Number(length)) return;
      complete = true;
      // A connection: close answer is followed by the close; else the connection stays.
      if (!/^connection: close/im.test(answer.slice(0, end))) finish(false);
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.write(data);
  });
}

describe.skipIf(!openssl)('TLS on the proxy port', { timeout: 60_000 }, () => {
  let ca: TestCa;
  let first: Leaf;
  let second: Leaf;
  beforeAll(() => {
    ca = createCa(openssl!);
    first = ca.issue('0A01');
    second = ca.issue('0B02');
  });
  afterAll(() => ca.close());

  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let mount: SecretMount;
  let sidecar: SidecarProcess | undefined;
  let verifying: Agent;
  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    mount = new SecretMount(first);
    verifying = new Agent({ connect: { ca: ca.cert } });
  });
  afterEach(async () => {
    if (sidecar?.child.exitCode === null) sidecar.child.kill('SIGKILL');
    await verifying.close();
    await upstream.close();
    await issuer.close();
    mount.close();
  });

  function tlsEnv(env: Record<string, string> = {}): Record<string, string> {
    const base = testEnv(issuer, upstream, { LOG_LEVEL: 'info', TLS_CERT_FILE: mount.certFile, TLS_KEY_FILE: mount.keyFile, ...env });
    delete base.RESOURCE_URL; // its default follows the scheme
    return base;
  }

  async function start(env: Record<string, string> = {}): Promise<{ proxyUrl: string; adminUrl: string }> {
    sidecar = spawnSidecar(tlsEnv(env));
    return (await sidecar.logged('mcp-auth-sidecar started')) as { proxyUrl: string; adminUrl: string };
  }

  it('serves HTTPS that a verifying client accepts; the admin port stays HTTP; the metadata says https', async () => {
    const { proxyUrl, adminUrl } = await start();
    expect(proxyUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);

    const accepted = await request(`${proxyUrl}/mcp`, {
      dispatcher: verifying,
      headers: { authorization: `Bearer ${await issuer.mint()}` },
    });
    expect(accepted.statusCode).toBe(200);
    await accepted.body.text();
    expect(upstream.seen.at(-1)?.headers['x-verified-user']).toBe('alice');
    expect(await servedSerial(proxyUrl, ca.cert)).toBe(first.serialNumber);

    // Without the CA the certificate does not verify; plain HTTP gets no answer from a TLS port.
    await expect(request(`${proxyUrl}/mcp`)).rejects.toThrow(/certificate/i);
    await expect(request(proxyUrl.replace('https:', 'http:'))).rejects.toThrow();

    const metadata = await request(`${proxyUrl}/.well-known/oauth-protected-resource`, { dispatcher: verifying });
    expect(((await metadata.body.json()) as { resource: string }).resource).toBe('https://localhost:0');

    expect(adminUrl).toMatch(/^http:\/\//);
    const health = await request(`${adminUrl}/healthz`);
    expect(health.statusCode).toBe(200);
    await health.body.text();
  });

  it("serves a renewed certificate after the Secret's symlink swap, without a restart; a bad pair leaves the last good one", async () => {
    const { proxyUrl, adminUrl } = await start();
    expect(await servedSerial(proxyUrl, ca.cert)).toBe(first.serialNumber);

    mount.write(second);
    const reloaded = await Promise.race([sidecar!.logged('tls certificate reloaded'), sidecar!.exited.then(() => ({}))]);
    expect(reloaded).toMatchObject({ serialNumber: second.serialNumber });
    expect(await servedSerial(proxyUrl, ca.cert)).toBe(second.serialNumber);
    const response = await request(`${proxyUrl}/mcp`, {
      dispatcher: new Agent({ connect: { ca: ca.cert } }),
      headers: { authorization: `Bearer ${await issuer.mint()}` },
    });
    expect(response.statusCode).toBe(200);
    await response.body.text();

    // A certificate with another certificate's key: refused, logged, counted; the renewed one stays.
    mount.write({ cert: first.cert, key: second.key });
    const refused = await sidecar!.logged('tls certificate reload failed: the last good certificate stays');
    expect(refused).toMatchObject({ level: 40, certFile: mount.certFile });
    expect(await servedSerial(proxyUrl, ca.cert)).toBe(second.serialNumber);

    const metrics = await (await request(`${adminUrl}/metrics`)).body.text();
    expect(metrics).toContain('mcp_auth_tls_reloads_total{result="success"} 1');
    expect(metrics).toContain('mcp_auth_tls_reloads_total{result="failure"} 1');
    expect(metrics).toMatch(/^mcp_auth_tls_certificate_expiry_timestamp_seconds \d+/m);

    sidecar!.child.kill('SIGTERM');
    expect(await sidecar!.exited).toBe(0);
  });

  it('keeps a TLS connection across rejections while there is headroom (one handshake), and closes it under pressure', async () => {
    // MAX_CONNECTIONS 4: more than 2 open is pressure.
    const { proxyUrl } = await start({ MAX_CONNECTIONS: '4' });
    const token = await issuer.mint();
    const now = Math.floor(Date.now() / 1000);
    const get = (authorization?: string) =>
      `GET /mcp HTTP/1.1\r\nHost: localhost\r\n${authorization === undefined ? '' : `Authorization: ${authorization}\r\n`}\r\n`;
    const rejected = [
      get(),
      get('Bearer not-a-jwt'),
      get(`Bearer ${token.slice(0, -8)}AAAAAAAA`),
      get(`Bearer ${await issuer.mint({}, { header: { kid: 'not-in-the-set' } })}`),
      get(`Bearer ${await issuer.mint({ iat: now - 7200, exp: now - 3600 })}`),
    ];

    const first = await openTls(proxyUrl, ca.cert);
    let handshakes = 1;
    first.on('secureConnect', () => handshakes++);
    for (const request of rejected) {
      const answer = await exchange(first, request);
      expect(answer.head).toMatch(/^HTTP\/1\.1 401/);
      expect(answer.closed).toBe(false);
      expect(answer.head).toMatch(/^keep-alive: timeout=\d+$/im);
    }
    // The same connection, no new handshake, then authenticates.
    expect((await exchange(first, get(`Bearer ${token}`))).head).toMatch(/^HTTP\/1\.1 200/);
    expect(handshakes).toBe(1);

    // A second connection on probation is kept with two open; a third that authenticates makes
    // three (pressure, and it stays): the next rejection on the second closes it, as it does a newcomer's.
    const second = await openTls(proxyUrl, ca.cert);
    expect((await exchange(second, get())).closed).toBe(false);
    const third = await openTls(proxyUrl, ca.cert);
    expect((await exchange(third, get(`Bearer ${token}`))).head).toMatch(/^HTTP\/1\.1 200/);
    const pressed = await exchange(second, get());
    expect(pressed.head).toMatch(/^HTTP\/1\.1 401/);
    expect(pressed.closed).toBe(true);
    const newcomer = await openTls(proxyUrl, ca.cert);
    expect((await exchange(newcomer, get())).closed).toBe(true);
    third.destroy();
    first.destroy();
  });

  it('refuses to start with one of the two variables, naming both', async () => {
    sidecar = spawnSidecar(tlsEnv({ TLS_KEY_FILE: '' }));
    expect(await sidecar.exited).toBe(1);
    expect(sidecar.stderr()).toContain('TLS_CERT_FILE is set but TLS_KEY_FILE is not');
  });

  it('refuses to start with a file it cannot read, naming the variable', async () => {
    sidecar = spawnSidecar(tlsEnv({ TLS_CERT_FILE: join(mount.dir, 'missing.crt') }));
    expect(await sidecar.exited).toBe(1);
    expect(sidecar.lines.at(-1)).toMatchObject({
      level: 60,
      cause: 'TLS_CERT_FILE',
      value: join(mount.dir, 'missing.crt'),
      code: 'ENOENT',
    });
  });

  it('refuses to start with a key of another certificate, naming the variable', async () => {
    mount.write({ cert: first.cert, key: second.key });
    sidecar = spawnSidecar(tlsEnv());
    expect(await sidecar.exited).toBe(1);
    expect(sidecar.lines.at(-1)).toMatchObject({ level: 60, cause: 'TLS_CERT_FILE' });
    expect(sidecar.lines.at(-1)!.msg).toContain('not a usable pair');
  });
});
