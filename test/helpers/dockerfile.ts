// The Dockerfile read as data, for the tests that check it and for the benchmarks, which run the
// sidecar with the image's environment and command.

import { readFileSync } from 'node:fs';

export interface Stage {
  from: string;
  name: string | undefined;
  lines: string[];
}

/** The Dockerfile as stages of instructions (comments and continuations folded). */
export function parseDockerfile(text = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8')): Stage[] {
  const instructions = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages: Stage[] = [];
  for (const line of instructions) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) stages.push({ from: from[1]!, name: from[2], lines: [] });
    else stages.at(-1)!.lines.push(line);
  }
  return stages;
}

/** The environment the image sets for its process: the runtime stage's `ENV NAME=value` lines. */
export function imageEnv(stages = parseDockerfile()): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of stages.at(-1)!.lines) {
    const set = /^ENV\s+([A-Za-z_][A-Za-z0-9_]*)=(?:"([^"]*)"|(\S*))$/i.exec(line);
    if (set) env[set[1]!] = set[2] ?? set[3]!;
  }
  return env;
}

/** The runtime stage's ENTRYPOINT (exec form) as an argument list: ['node', ...flags, 'dist/main.js']. */
export function imageCommand(stages = parseDockerfile()): string[] {
  const entrypoint = stages.at(-1)!.lines.find((l) => /^ENTRYPOINT\s/i.test(l));
  if (entrypoint === undefined) throw new Error('the Dockerfile has no ENTRYPOINT');
  if (stages.at(-1)!.lines.some((l) => /^CMD\s/i.test(l)))
    throw new Error('the Dockerfile has a CMD: arguments would not reach the entry point alone');
  return JSON.parse(entrypoint.slice('ENTRYPOINT'.length)) as string[];
}
