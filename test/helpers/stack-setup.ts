// vitest globalSetup for the real stack: starts Keycloak once per run and builds the Go test
// programs once (cached by source hash), only when a test file that needs them is in the run.
// Workers get what they need through inject('keycloak') and inject('go') (helpers/keycloak.ts,
// helpers/go.ts); absent tools reach them as `missing`, and they skip through skipMissing.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { freePort } from './tools.js';
import type { GoPrograms } from './go.js';

export const KEYCLOAK_VERSION = '26.7.3';
export const KEYCLOAK_ADMIN = { username: 'admin', password: 'admin-password' };

export type KeycloakInfo = { url: string; managementUrl: string; pid: number; log: string } | { missing: string };
export type GoInfo = GoPrograms | { missing: string };

declare module 'vitest' {
  export interface ProvidedContext {
    keycloak: KeycloakInfo | null;
    go: GoInfo | null;
  }
}

const cache = process.env.KEYCLOAK_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'mcp-auth-sidecar');

export function lookup(name: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** The test files of this run that import a helper: all when the command line names none. */
export function needed(helper: string): boolean {
  // Test files sit in folders by kind (test/unit, test/integration, test/interop).
  const files = readdirSync('test', { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => join('test', f));
  const users = files.filter((f) => readFileSync(f, 'utf8').includes(`/helpers/${helper}.js'`));
  const commands = new Set(['run', 'watch', 'dev', 'related']);
  const filters = process.argv.slice(2).filter((a) => !a.startsWith('-') && !commands.has(a) && files.some((f) => f.includes(a)));
  if (filters.length === 0) return users.length > 0;
  return users.some((f) => filters.some((a) => f.includes(a)));
}

function startKeycloak(home: string, dir: string, port: number, managementPort: number): ChildProcess {
  const log = join(dir, 'keycloak.log');
  const out = openSync(log, 'a');
  // The same build options every run (dev-mem, health), so start-dev re-augments only the first time.
  return spawn(
    join(home, 'bin', 'kc.sh'),
    [
      'start-dev',
      '--db=dev-mem',
      '--health-enabled=true',
      '--http-host=127.0.0.1',
      `--http-port=${port}`,
      `--http-management-port=${managementPort}`,
      '--hostname-strict=false',
      '--log-level=warn',
      // Runs share the unpacked distribution: the transaction log of this one stays in its own folder.
      `-Dquarkus.transaction-manager.object-store.directory=${join(dir, 'object-store')}`,
    ],
    {
      detached: true,
      stdio: ['ignore', out, out],
      env: { ...process.env, KC_BOOTSTRAP_ADMIN_USERNAME: KEYCLOAK_ADMIN.username, KC_BOOTSTRAP_ADMIN_PASSWORD: KEYCLOAK_ADMIN.password },
    },
  );
}

/** Builds the Go programs into a cache folder named after the hash of their sources. */
function buildGo(go: string): GoInfo {
  const root = join('test', 'go');
  const sources = readdirSync(root, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.go') || f === 'go.mod' || f === 'go.sum')
    .sort();
  const hash = createHash('sha256');
  for (const file of sources) hash.update(`${file}\0`).update(readFileSync(join(root, file)));
  const dir = join(cache, `go-test-${hash.digest('hex').slice(0, 16)}`);
  const programs = {
    server: join(dir, 'server'),
    mcpgoServer: join(dir, 'mcpgo-server'),
    gosdkClient: join(dir, 'gosdk-client'),
    mcpgoClient: join(dir, 'mcpgo-client'),
    everythingServer: join(dir, 'everything-server'),
    gofold: join(dir, 'gofold'),
  };
  if (!Object.values(programs).every((p) => existsSync(p))) {
    mkdirSync(cache, { recursive: true });
    const tmp = mkdtempSync(join(cache, '.go-build-'));
    execFileSync(go, ['build', '-o', `${tmp}/`, './cmd/...'], { cwd: root, stdio: 'inherit' });
    // The go-sdk's conformance server, from the module go.mod pins (the official conformance suite's target).
    execFileSync(go, ['build', '-o', `${tmp}/`, 'github.com/modelcontextprotocol/go-sdk/conformance/everything-server'], {
      cwd: root,
      stdio: 'inherit',
    });
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }
  return programs;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let keycloak: ChildProcess | undefined;
  let dir: string | undefined;

  if (needed('go')) {
    const go = lookup('go');
    project.provide('go', go ? buildGo(go) : { missing: 'go' });
  } else project.provide('go', null);

  if (needed('keycloak')) {
    const home = process.env.KEYCLOAK_HOME ?? join(cache, `keycloak-${KEYCLOAK_VERSION}`);
    if (!existsSync(join(home, 'bin', 'kc.sh'))) project.provide('keycloak', { missing: 'keycloak' });
    else if (!lookup('java') && !process.env.JAVA_HOME) project.provide('keycloak', { missing: 'java' });
    else {
      dir = mkdtempSync(join(tmpdir(), 'keycloak-'));
      const port = await freePort();
      const managementPort = await freePort();
      keycloak = startKeycloak(home, dir, port, managementPort);
      // Its own process group (detached), so teardown can end kc.sh and its java together; if
      // vitest itself is interrupted, the group goes with it.
      const group = keycloak.pid!;
      process.once('exit', () => {
        try {
          process.kill(-group, 'SIGKILL');
        } catch {
          /* already gone */
        }
      });
      // Not waited for here: the files that need it wait (helpers/keycloak.ts), the others run meanwhile.
      project.provide('keycloak', {
        url: `http://127.0.0.1:${port}`,
        managementUrl: `http://127.0.0.1:${managementPort}`,
        pid: keycloak.pid!,
        log: join(dir, 'keycloak.log'),
      });
    }
  } else project.provide('keycloak', null);

  return async () => {
    if (keycloak?.pid !== undefined && keycloak.exitCode === null) {
      const exited = new Promise((resolve) => keycloak!.once('exit', resolve));
      process.kill(-keycloak.pid, 'SIGTERM');
      const timer = setTimeout(() => {
        try {
          process.kill(-keycloak!.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, 15_000);
      await exited;
      clearTimeout(timer);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
}
