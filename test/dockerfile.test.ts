import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { loadConfig } from '../src/config.js';

interface Stage { from: string; name: string | undefined; lines: string[] }

/** The Dockerfile as stages of instructions (comments and continuations folded). */
function parseDockerfile(text: string): Stage[] {
  const instructions = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const stages: Stage[] = [];
  for (const line of instructions) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) stages.push({ from: from[1]!, name: from[2], lines: [] });
    else stages.at(-1)!.lines.push(line);
  }
  return stages;
}

const stages = parseDockerfile(readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8'));
const runtime = stages.at(-1)!;
const instruction = (name: string) => runtime.lines.filter((l) => l.toUpperCase().startsWith(`${name} `));

describe('the Dockerfile keeps its promises', () => {
  it('is multi-stage on Node 24 LTS', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) expect(stage.from).toMatch(/^node:24[-.]/);
  });

  it('runs as a non-root numeric user', () => {
    const [user] = instruction('USER');
    expect(user).toMatch(/^USER [1-9]\d*(:[1-9]\d*)?$/);
  });

  it('exposes the default proxy and admin ports', () => {
    const defaults = loadConfig({ OIDC_ISSUER: 'https://x', OIDC_ALLOWED_AZP: 'coder' });
    const exposed = instruction('EXPOSE').flatMap((l) => l.split(/\s+/).slice(1)).map(Number).sort();
    expect(exposed).toEqual([defaults.port, defaults.adminPort].sort());
  });

  it('starts node directly on the build output', () => {
    const [cmd] = instruction('CMD');
    expect(JSON.parse(cmd!.slice(4))).toEqual(['node', 'dist/main.js']);
    // dist/main.js is what tsconfig.build.json makes of src/main.ts.
    const build = JSON.parse(readFileSync(new URL('../tsconfig.build.json', import.meta.url), 'utf8')) as { compilerOptions: { rootDir: string; outDir: string } };
    expect(build.compilerOptions).toMatchObject({ rootDir: 'src', outDir: 'dist' });
    expect(readFileSync(new URL('../src/main.ts', import.meta.url), 'utf8')).toContain('buildApp');
  });

  it('installs production dependencies only and copies nothing but the build and package files', () => {
    const installs = instruction('RUN').filter((l) => l.includes('npm '));
    expect(installs).toHaveLength(1);
    expect(installs[0]).toMatch(/npm ci --omit=dev/);
    const copies = instruction('COPY');
    expect(copies).toEqual(['COPY package.json package-lock.json ./', 'COPY --from=build /app/dist ./dist']);
  });
});
