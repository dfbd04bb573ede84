// A test CA and server certificates it signs, made with the openssl command line (Node can
// verify certificates but not issue them), for `localhost` and 127.0.0.1.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Leaf {
  cert: string;
  key: string;
  /** As X509Certificate.serialNumber writes it (upper-case hex). */
  serialNumber: string;
}

export interface TestCa {
  readonly cert: string;
  /** A new key and certificate for localhost, signed by this CA. */
  issue(serialNumber: string): Leaf;
  close(): void;
}

export function createCa(openssl: string): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-ca-'));
  const run = (...args: string[]) => execFileSync(openssl, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  run(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '2',
    '-subj',
    '/CN=mcp-auth-sidecar test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
  writeFileSync(join(dir, 'leaf.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  return {
    cert: readFileSync(join(dir, 'ca.crt'), 'utf8'),
    issue(serialNumber) {
      const name = `leaf-${serialNumber}`;
      run('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=localhost');
      run(
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-set_serial',
        `0x${serialNumber}`,
        '-days',
        '1',
        '-extfile',
        'leaf.ext',
        '-out',
        `${name}.crt`,
      );
      return { cert: readFileSync(join(dir, `${name}.crt`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8'), serialNumber };
    },
    close: () => rmSync(dir, { recursive: true, force: true }),
  };
}
