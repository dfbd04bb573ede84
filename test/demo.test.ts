import { afterEach, describe, expect, it } from 'vitest';
import { spawn, exec, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(exec);

/** Resolves with the output once `marker` appears; rejects if the process exits or the deadline passes. */
function waitForOutput(child: ChildProcess, marker: string, deadlineMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`no "${marker}" within ${deadlineMs} ms:\n${output}`)), deadlineMs);
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes(marker)) {
        clearTimeout(timer);
        resolve(output);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`demo exited with ${code} before "${marker}":\n${output}`));
    });
  });
}

describe('npm run demo', () => {
  let demo: ChildProcess | undefined;
  afterEach(() => {
    try {
      if (demo?.exitCode === null) process.kill(-demo.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  });

  it('prints commands that work: an accepted curl, an MCP client call and a rejected curl; Ctrl-C stops it', async () => {
    // What `npm run demo` runs; spawned directly so the test sees the demo's own exit code.
    demo = spawn('node_modules/.bin/tsx', ['demo/demo.ts'], {
      env: { ...process.env, PORT: '0', ADMIN_PORT: '0', DEMO_MCP_PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const output = await waitForOutput(demo, 'Ctrl-C stops the demo.', 30_000);
    const lines = output.split('\n').map((l) => l.trim());
    const [accepted, rejected] = lines.filter((l) => l.startsWith('curl -s') && l.includes('/mcp'));
    const client = lines.find((l) => l.startsWith('npx tsx demo/client.ts'));
    expect(accepted).toContain('authorization: Bearer');

    const ok = await run(accepted!, { timeout: 10_000 });
    expect(ok.stdout).toContain('you are alice');

    const sdk = await run(client!, { timeout: 30_000 });
    expect(sdk.stdout).toContain('whoami: you are alice');

    const denied = await run(rejected!, { timeout: 10_000 });
    expect(denied.stdout).toMatch(/^HTTP\/1\.1 401/);
    expect(denied.stdout).toContain('"reason":"missing_token"');

    // Ctrl-C reaches the whole process group, as in a terminal: the demo closes its three servers and exits 0.
    const urls = [...output.matchAll(/(http:\/\/127\.0\.0\.1:\d+)/g)].map((m) => m[1]!);
    const exited = new Promise<number | null>((resolve) => demo!.once('exit', resolve));
    process.kill(-demo.pid!, 'SIGINT');
    expect(await exited).toBe(0);
    for (const url of new Set(urls)) {
      await expect(fetch(url, { signal: AbortSignal.timeout(5000) })).rejects.toThrow();
    }
  }, 60_000);
});
