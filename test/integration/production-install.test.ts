import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { imageCommand, imageEnv } from '../helpers/dockerfile.js';

// The Dockerfile's steps without Docker: build, then in an empty directory install the
// production dependencies from the lock file and copy dist/, then start it as the ENTRYPOINT does, with the image's ENV.
describe('the production install the image is made of', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sidecar-image-'));
  let issuer: TestIssuer | undefined;
  afterAll(async () => {
    await issuer?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('installs without dev dependencies, serves /healthz, and exits 0 on SIGTERM', async () => {
    execFileSync('npm', ['run', 'build'], { stdio: 'ignore' });
    cpSync('package.json', join(dir, 'package.json'));
    cpSync('package-lock.json', join(dir, 'package-lock.json'));
    execFileSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], {
      cwd: dir,
      stdio: 'ignore',
    });
    cpSync('dist', join(dir, 'dist'), { recursive: true });
    for (const dev of ['vitest', 'typescript', 'tsx', 'oidc-provider', '@modelcontextprotocol/sdk']) {
      expect(existsSync(join(dir, 'node_modules', dev)), dev).toBe(false);
    }

    // The built entry finds package.json from dist/ as the image lays it out.
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    expect(execFileSync(process.execPath, ['dist/main.js', '--version'], { cwd: dir, encoding: 'utf8' })).toBe(`${version}\n`);
    // The policy command ships in the image: `docker run IMAGE policy test /p/policy.yaml /p/cases.yaml`.
    const policyTest = execFileSync(
      process.execPath,
      ['dist/main.js', 'policy', 'test', resolve('examples/policy/datastore.yaml'), resolve('examples/policy/datastore.cases.yaml')],
      { cwd: dir, encoding: 'utf8' },
    );
    expect(policyTest).toMatch(/^\d+ passed, 0 failed$/m);

    issuer = await startIssuer();
    await issuer.addKey();
    const [, ...args] = imageCommand(); // the ENTRYPOINT without node: this Node runs it
    const child = spawn(process.execPath, args, {
      cwd: dir,
      env: {
        PATH: process.env.PATH,
        ...imageEnv(),
        OIDC_ISSUER: issuer.issuer,
        OIDC_ALLOWED_AZP: 'coder',
        PORT: '0',
        ADMIN_PORT: '0',
        HOST: '127.0.0.1',
        ADMIN_HOST: '127.0.0.1',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const started = await new Promise<{ adminUrl: string }>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const entry = JSON.parse(line) as { msg: string; adminUrl: string };
        if (entry.msg === 'mcp-auth-sidecar started') resolve(entry);
      });
      void exited.then((code) => reject(new Error(`exited ${code} before start`)));
    });
    const health = await request(`${started.adminUrl}/healthz`);
    expect(health.statusCode).toBe(200);
    await health.body.text();
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 120_000);
});
