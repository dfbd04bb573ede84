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

/** Resolves once a connection to `url` is refused; fails when it still answers after `deadlineMs`. */
async function expectRefusedWithin(url: string, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      await fetch(url, { signal: AbortSignal.timeout(2000) });
    } catch {
      return;
    }
    if (Date.now() > deadline) throw new Error(`${url} still answers ${deadlineMs} ms after SIGTERM`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
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

  it('prints commands that work (an accepted curl, an MCP client call, a rejected curl) on 127.0.0.1 with their request lines; SIGTERM to npm stops it', async () => {
    // `npm run demo` as a user runs it, in a process group of its own as in a terminal.
    demo = spawn('npm', ['run', 'demo'], {
      env: { ...process.env, PORT: '0', ADMIN_PORT: '0', DEMO_MCP_PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const output = await waitForOutput(demo, 'Ctrl-C stops the demo.', 30_000);
    const lines = output.split('\n').map((l) => l.trim());
    const [accepted, rejected] = lines.filter((l) => l.startsWith('curl -s') && l.includes('/mcp'));
    const client = lines.find((l) => l.startsWith('npx tsx demo/client.ts'));
    expect(accepted).toContain('authorization: Bearer');

    // Every server of the demo is on this machine only, and the metadata names the URL printed.
    const urls = [...output.matchAll(/(https?:\/\/[\w.:-]+?:\d+)/g)].map((m) => m[1]!);
    expect(urls.length).toBeGreaterThan(3);
    for (const url of urls) expect(url).toMatch(/^http:\/\/127\.0\.0\.1:/);
    const proxyUrl = /sidecar proxy\s+(\S+)/.exec(output)![1]!;
    const metadata = await run(`curl -s ${proxyUrl}/.well-known/oauth-protected-resource`, { timeout: 10_000 });
    expect(JSON.parse(metadata.stdout)).toMatchObject({ resource: proxyUrl });

    const requestLine = waitForOutput(demo, '"decision":"accept"', 10_000);
    const ok = await run(accepted!, { timeout: 10_000 });
    expect(ok.stdout).toContain('you are alice');
    // The request line docs/getting-started.md tells you to look for is shown (no LOG_LEVEL=warn hiding it).
    expect(await requestLine).toMatch(/"decision":"accept"[^\n]*"user":"alice"[^\n]*"msg":"request"/);

    const sdk = await run(client!, { timeout: 30_000 });
    expect(sdk.stdout).toContain('whoami: you are alice');

    const denied = await run(rejected!, { timeout: 10_000 });
    expect(denied.stdout).toMatch(/^HTTP\/1\.1 401/);
    expect(denied.stdout).toContain('"reason":"missing_token"');

    // SIGTERM to the npm process alone (as a process manager stops it): all three servers close.
    const exited = new Promise<number | null>((resolve) => demo!.once('exit', resolve));
    process.kill(demo.pid!, 'SIGTERM');
    expect(await exited).toBe(0);
    for (const url of new Set(urls)) await expectRefusedWithin(url, 10_000);
  }, 60_000);
});
