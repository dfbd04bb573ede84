// The sidecar as its own process (src/main.ts through tsx, as `npm start` runs dist/main.js):
// its JSON log lines as they come, and its exit.

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface SidecarProcess {
  child: ChildProcess;
  /** Every stdout line so far, parsed (a line that is not JSON fails the test that reads it). */
  readonly lines: Record<string, unknown>[];
  /** Everything written to stderr so far. */
  stderr(): string;
  /** The first line whose msg is `msg`, now or when it comes; rejects when the process exits first. */
  logged(msg: string): Promise<Record<string, unknown>>;
  /** Exit code, once stdout and stderr are fully read. */
  exited: Promise<number | null>;
}

export function spawnSidecar(env: Record<string, string>, args: string[] = []): SidecarProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  const waiters: [string, (line: Record<string, unknown>) => void][] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const stdoutDone = new Promise<void>((resolve) => {
    createInterface({ input: child.stdout! })
      .on('line', (text) => {
        let line: Record<string, unknown>;
        try {
          line = JSON.parse(text) as Record<string, unknown>;
        } catch {
          line = { notJson: text };
        }
        lines.push(line);
        for (const [msg, resolve] of waiters) if (line.msg === msg) resolve(line);
      })
      .on('close', resolve);
  });
  const stderrDone = new Promise<void>((resolve) => child.stderr!.on('close', resolve));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      void Promise.all([stdoutDone, stderrDone]).then(() => resolve(code));
    }),
  );
  const logged = (msg: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const seen = lines.find((l) => l.msg === msg);
      if (seen) return resolve(seen);
      waiters.push([msg, resolve]);
      void exited.then((code) => reject(new Error(`exited ${code} before logging "${msg}": ${JSON.stringify(lines)} ${stderr}`)));
    });
  return { child, lines, stderr: () => stderr, logged, exited };
}
