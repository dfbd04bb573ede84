import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadConfig } from '../../src/config/config.js';
import { imageCommand, imageEnv, parseDockerfile } from '../helpers/dockerfile.js';

const stages = parseDockerfile();
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
    const exposed = instruction('EXPOSE')
      .flatMap((l) => l.split(/\s+/).slice(1))
      .map(Number)
      .sort();
    expect(exposed).toEqual([defaults.port, defaults.adminPort].sort());
  });

  it('starts node directly on the build output', () => {
    const command = imageCommand(stages);
    expect(command[0]).toBe('node');
    expect(command.at(-1)).toBe('dist/main.js');
    // dist/main.js is what tsconfig.build.json makes of src/main.ts.
    const build = JSON.parse(readFileSync(new URL('../../tsconfig.build.json', import.meta.url), 'utf8')) as {
      compilerOptions: { rootDir: string; outDir: string };
    };
    expect(build.compilerOptions).toMatchObject({ rootDir: 'src', outDir: 'dist' });
    // src/main.ts dispatches its argument; with none it serves (src/serve.ts builds the app).
    expect(readFileSync(new URL('../../src/main.ts', import.meta.url), 'utf8')).toContain('await serve(process.env)');
    expect(readFileSync(new URL('../../src/serve.ts', import.meta.url), 'utf8')).toContain('buildApp');
  });

  it('runs in production mode with a small young generation and a fixed malloc threshold (the benchmarks run it so too)', () => {
    // 8 MB semi-spaces instead of V8's 16 (Node 20) or 64 (Node 24 on a large host), and glibc
    // kept from growing its mmap threshold: tens of MB less resident memory at no measurable
    // cost in throughput (bench/RESULTS.md).
    expect(imageEnv(stages)).toEqual({
      NODE_ENV: 'production',
      NODE_OPTIONS: '--max-semi-space-size=8',
      MALLOC_MMAP_THRESHOLD_: '2097152',
    });
  });

  it('gives node only V8 heap flags, and ones this Node accepts', () => {
    // A low growing factor keeps the resident set near the live heap on Node 24 (bench/RESULTS.md).
    const flags = imageCommand(stages).slice(1, -1);
    expect(flags).toEqual(['--heap-growing-percent=20']);
    // A flag this Node does not know stops it before the first line runs ("bad option", exit 9).
    expect(() => execFileSync(process.execPath, [...flags, '-e', '0'], { stdio: 'pipe' })).not.toThrow();
  });

  it('installs production dependencies only and copies nothing but the build and package files', () => {
    const installs = instruction('RUN').filter((l) => l.includes('npm '));
    expect(installs).toHaveLength(1);
    expect(installs[0]).toMatch(/npm ci --omit=dev/);
    const copies = instruction('COPY');
    expect(copies).toEqual(['COPY package.json package-lock.json ./', 'COPY --from=build /app/dist ./dist']);
  });
});
