// The Go test programs (test/go, built once per run by stack-setup.ts): the go-sdk MCP server and
// the go-sdk and mcp-go clients.
//
//   const go = useGo();                              // undefined: skipped (one line; CI=true fails)
//   const server = await startGoServer();            // server.url = http://127.0.0.1:PORT/mcp
//   const run = await runGoClient('mcpgo', sidecarUrl + '/mcp', token);

import { spawn, type ChildProcess } from 'node:child_process';
import { inject } from 'vitest';
import { skipMissing } from './tools.js';

export interface GoPrograms {
  /** The go-sdk server: `server [address]`, prints `listening http://HOST:PORT/mcp`. */
  server: string;
  gosdkClient: string;
  mcpgoClient: string;
}

const info = inject('go');

/** The built programs, or undefined when Go is absent (recorded as a skip; CI=true throws). */
export function useGo(): GoPrograms | undefined {
  if (info === null) throw new Error('stack-setup did not build the Go programs for this file: does it import ../helpers/go.js?');
  if ('missing' in info) {
    skipMissing(info.missing);
    return undefined;
  }
  return info;
}

export interface GoServer {
  /** The MCP endpoint, http://127.0.0.1:PORT/mcp. */
  url: string;
  /** http://127.0.0.1:PORT, for UPSTREAM_URL. */
  origin: string;
  process: ChildProcess;
  close(): Promise<void>;
}

/** Starts the go-sdk MCP server on a free loopback port (bounded wait for its listening line). */
export async function startGoServer(address = '127.0.0.1:0'): Promise<GoServer> {
  if (!info || 'missing' in info) throw new Error('Go programs are not built');
  const child = spawn(info.server, [address], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const url = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => reject(new Error(`Go server did not start in 10 s: ${stderr}`)), 10_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /listening (\S+)/.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Go server exited (${code}): ${stderr}`));
    });
  });
  return {
    url,
    origin: new URL(url).origin,
    process: child,
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export interface ClientRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall time from start to exit. */
  ms: number;
  /** Parsed stdout on success: { tools: string[], whoami: { user, subject, email, groups, authorization } }. */
  result?: { tools: string[]; whoami: Record<string, unknown> };
}

/** Runs one Go client against `url` with `token` as Bearer (none when undefined); it gives up after 10 s. */
export async function runGoClient(kind: 'gosdk' | 'mcpgo', url: string, token?: string): Promise<ClientRun> {
  if (!info || 'missing' in info) throw new Error('Go programs are not built');
  const binary = kind === 'gosdk' ? info.gosdkClient : info.mcpgoClient;
  const started = performance.now();
  const env = { ...process.env, MCP_TOKEN: token ?? '' };
  const child = spawn(binary, [url], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const run: ClientRun = { code, stdout, stderr, ms: performance.now() - started };
  if (code === 0) run.result = JSON.parse(stdout);
  return run;
}
