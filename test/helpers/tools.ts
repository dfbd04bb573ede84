// External tools the tests use. .ci/run installs them (Debian package prometheus).

import { execFileSync } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';

/** The path of a command, or an error telling how to get it: tests that need it must fail, not skip. */
export function requireTool(name: string): string {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(`${name} is not installed: .ci/run installs it (apt-get install prometheus), or install it by hand`);
  }
}

/** A port that was free a moment ago, for servers that must know their URL before they start. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
