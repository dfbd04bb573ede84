// External tools the tests use. .ci/run installs them (Debian package prometheus).

import { execFileSync } from 'node:child_process';

/** The path of a command, or an error telling how to get it: tests that need it must fail, not skip. */
export function requireTool(name: string): string {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(`${name} is not installed: .ci/run installs it (apt-get install prometheus), or install it by hand`);
  }
}
