// HTTPS on the proxy port (TLS_CERT_FILE, TLS_KEY_FILE), and renewed files served without a
// restart. cert-manager renews into a Secret that the kubelet swaps by a symlink (`..data`) in
// the mounted directory, so the directories are watched, not the files (a watch on a file
// follows its old inode); a slow timer re-reads the pair too, for mounts where no event comes.
// A new pair is checked (PEM, key matches certificate) before it replaces the served one; a
// bad one is logged and counted and the last good pair stays.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createSecureContext as tlsContext } from 'node:tls';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { StartupError } from '../lib/errors.js';
import { watchMountedFiles, type MountedFilesWatch } from '../lib/mounted-files.js';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

export interface TlsPair {
  cert: Buffer;
  key: Buffer;
}

/** Re-read the files this often even without a file event. */
const RECHECK_MS = 60_000;
/** A burst of events (a swap is several renames) becomes one reload. */
const SETTLE_MS = 100;

/** Reads and checks the pair at start-up; a problem names the variable to fix. */
export function readTlsPair(files: TlsFiles): TlsPair {
  const read = (variable: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new StartupError(variable, file, `cannot read ${variable} ${file}: ${(error as Error).message}`, { cause: error });
    }
  };
  const pair = { cert: read('TLS_CERT_FILE', files.certFile), key: read('TLS_KEY_FILE', files.keyFile) };
  try {
    check(pair);
  } catch (error) {
    throw new StartupError(
      'TLS_CERT_FILE',
      files.certFile,
      `TLS_CERT_FILE ${files.certFile} and TLS_KEY_FILE ${files.keyFile} are not a usable pair: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return pair;
}

/** Throws unless the certificate is PEM and the key is its own. */
function check(pair: TlsPair): X509Certificate {
  const certificate = new X509Certificate(pair.cert);
  tlsContext(pair); // OpenSSL refuses a key that does not match the certificate
  return certificate;
}

function same(a: TlsPair, b: TlsPair): boolean {
  return a.cert.equals(b.cert) && a.key.equals(b.key);
}

interface SecureServer {
  setSecureContext(options: TlsPair): void;
}

export class CertificateReloader {
  private current: TlsPair;
  /** The last pair that failed, so that the timer does not report it again every minute. */
  private refused: TlsPair | undefined;
  private watch: MountedFilesWatch | undefined;
  private reloading: Promise<void> | undefined;
  private readonly reloads: Counter<'result'>;
  private readonly expiry: Gauge;

  constructor(
    private readonly server: SecureServer,
    private readonly files: TlsFiles,
    initial: TlsPair,
    private readonly logger: Logger,
    registry: Registry,
  ) {
    this.current = initial;
    const registers = [registry];
    this.reloads = new Counter({
      name: 'mcp_auth_tls_reloads_total',
      help: 'Renewed TLS certificate files read, by result (failure: the last good pair stays).',
      labelNames: ['result'],
      registers,
    });
    for (const result of ['success', 'failure']) this.reloads.inc({ result }, 0);
    this.expiry = new Gauge({
      name: 'mcp_auth_tls_certificate_expiry_timestamp_seconds',
      help: 'Unix time the served TLS certificate expires.',
      registers,
    });
    this.expiry.set(Date.parse(new X509Certificate(initial.cert).validTo) / 1000);
  }

  start(): void {
    this.watch = watchMountedFiles([this.files.certFile, this.files.keyFile], () => this.reload(), {
      settleMs: SETTLE_MS,
      recheckMs: RECHECK_MS,
      // A directory that goes away (an unmounted volume) leaves the timer to do the work.
      onWatchError: (directory, error) =>
        this.logger.warn({ directory, err: error.message }, 'tls: cannot watch the directory; the files are re-read every minute'),
    });
  }

  close(): void {
    this.watch?.close();
  }

  /** Reads the files; serves them when they changed and are a good pair. One reload at a time. */
  reload(): Promise<void> {
    this.reloading ??= this.readAndSwap().finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  private async readAndSwap(): Promise<void> {
    const { certFile, keyFile } = this.files;
    try {
      const pair = { cert: await readFile(certFile), key: await readFile(keyFile) };
      if (same(pair, this.current) || (this.refused !== undefined && same(pair, this.refused))) return;
      let certificate: X509Certificate;
      try {
        certificate = check(pair);
      } catch (error) {
        this.refused = pair;
        throw error;
      }
      this.server.setSecureContext(pair);
      this.current = pair;
      this.reloads.inc({ result: 'success' });
      this.expiry.set(Date.parse(certificate.validTo) / 1000);
      this.logger.info(
        { certFile, subject: certificate.subject, serialNumber: certificate.serialNumber, validTo: certificate.validTo },
        'tls certificate reloaded',
      );
    } catch (error) {
      this.reloads.inc({ result: 'failure' });
      this.logger.warn(
        { certFile, keyFile, err: (error as Error).message },
        'tls certificate reload failed: the last good certificate stays',
      );
    }
  }
}
