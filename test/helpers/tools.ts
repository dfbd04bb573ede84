// External tools the tests use. .ci/run installs every one of them; on a machine without one,
// the tests that need it are skipped with a line naming the tool and how to install it, and with
// CI=true a missing tool is a failure (a skipped interop test proves nothing).

import { execFileSync } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';

/** How to install each tool the tests use (Debian, as root; .ci/run does the same). */
export const INSTALL: Record<string, string> = {
  prometheus: 'apt-get install prometheus',
  promtool: 'apt-get install prometheus',
  'redis-server': 'apt-get install redis-server',
  kubectl: 'apt-get install kubernetes-client',
  go: 'apt-get install golang (or the Go toolchain from go.dev)',
  java: 'apt-get install openjdk-17-jre-headless',
  mvn: 'apt-get install maven',
};

function lookup(name: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The path of a command, or undefined when it is absent: the caller skips its tests
 * (`describe.skipIf(!path)`). One line on stderr names the tool and its install command;
 * under CI=true an absent tool throws instead, so the run fails.
 */
export function findTool(name: string): string | undefined {
  const path = lookup(name);
  if (path !== undefined) return path;
  const message = `skipped: tests that need ${name} (install: ${INSTALL[name] ?? `install ${name}`})`;
  if (process.env.CI === 'true') throw new Error(`${name} is not installed and CI=true: ${message}`);
  process.stderr.write(`${message}\n`);
  return undefined;
}

/** The path of a command, or an error telling how to get it (for tests that cannot run without it). */
export function requireTool(name: string): string {
  const path = lookup(name);
  if (path === undefined) throw new Error(`${name} is not installed: ${INSTALL[name] ?? `install ${name}`} (.ci/run installs it)`);
  return path;
}

/** A port that was free a moment ago, for servers that must know their URL before they start. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
