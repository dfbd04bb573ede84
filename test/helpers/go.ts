// The Go test programs (test/go, built once per run by stack-setup.ts): the go-sdk and mcp-go MCP
// servers, the go-sdk and mcp-go clients, and gofold (encoding/json's folding table).
//
//   const go = useGo();                              // undefined: skipped (one line; CI=true fails)
//   const server = await startGoServer();            // server.url = http://127.0.0.1:PORT/mcp
//   const mcpgo = await startGoServer(undefined, 'mcpgo');
//   const run = await runGoClient('mcpgo', sidecarUrl + '/mcp', token);

import { spawn, type ChildProcess } from 'node:child_process';
import { inject } from 'vitest';
import { arrivals } from './arrivals.js';
import type { RanCallFields } from './mcp-server.js';
import { freePort, skipMissing } from './tools.js';

export interface GoPrograms {
  /** The go-sdk server: `server [address] [stateless]`, prints `listening http://HOST:PORT/mcp`. */
  server: string;
  /** The mcp-go server, the same way. */
  mcpgoServer: string;
  gosdkClient: string;
  mcpgoClient: string;
  /** go-sdk's conformance/everything-server: `everything-server -http ADDRESS` (stateless, every path). */
  everythingServer: string;
  /** Prints encoding/json's member-name folding table (src/lib/go-fold.ts carries it). */
  gofold: string;
}

/** A call a Go server ran, as it printed it (`ran {json}`): what its handler received. */
export interface RanCall extends RanCallFields {
  server: 'go-sdk' | 'mcp-go';
  user?: string;
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
  /** Every call the server ran so far, in order. */
  ran: RanCall[];
  /** Resolves once `count` calls matching `where` have run (bounded by the test's timeout). */
  waitForRan(where: (call: RanCall) => boolean, count?: number): Promise<RanCall[]>;
  close(): Promise<void>;
}

/**
 * Starts the go-sdk (or, `kind: 'mcpgo'`, the mcp-go) MCP server on a free loopback port (bounded
 * wait for its listening line); `stateless`: the go-sdk's stateless mode (MCP 2026-07-28 too) with
 * the tools that revision's tests use.
 */
export async function startGoServer(
  address = '127.0.0.1:0',
  { kind = 'gosdk', stateless = false }: { kind?: 'gosdk' | 'mcpgo'; stateless?: boolean } = {},
): Promise<GoServer> {
  if (!info || 'missing' in info) throw new Error('Go programs are not built');
  if (stateless && kind !== 'gosdk') throw new Error('only the go-sdk server has a stateless mode');
  const program = kind === 'gosdk' ? info.server : info.mcpgoServer;
  const child = spawn(program, stateless ? [address, 'stateless'] : [address], { stdio: ['ignore', 'pipe', 'pipe'] });
  const ran: RanCall[] = [];
  const calls = arrivals(() => ran);
  let pending = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) if (line.startsWith('ran ')) ran.push(JSON.parse(line.slice(4)) as RanCall);
    calls.wake();
  });
  const waitForRan = (where: (call: RanCall) => boolean, count?: number) => calls.waitFor(where, count);
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
    ran,
    waitForRan,
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
  /**
   * Parsed stdout on success: { protocol, tools: string[], whoami: { user, subject, email, groups,
   * authorization } }, or with MCP_STEPS { protocol, tools, steps: { step: { text } | { error } } }.
   */
  result?: {
    protocol: string;
    tools: string[];
    whoami: Record<string, unknown>;
    steps?: Record<string, { text?: string; error?: string }>;
  };
}

/**
 * Runs one Go client against `url` with `token` as Bearer (none when undefined); it gives up after
 * 10 s. `env`: MCP_PROTOCOL, MCP_STEPS, MCP_ARGS_<TOOL> (see the programs' comments).
 */
export async function runGoClient(
  kind: 'gosdk' | 'mcpgo',
  url: string,
  token?: string,
  extra: Record<string, string> = {},
): Promise<ClientRun> {
  if (!info || 'missing' in info) throw new Error('Go programs are not built');
  const binary = kind === 'gosdk' ? info.gosdkClient : info.mcpgoClient;
  const started = performance.now();
  const env = { ...process.env, MCP_TOKEN: token ?? '', ...extra };
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

/** go-sdk's conformance/everything-server (stateless) on a free loopback port; `url` is its MCP endpoint. */
export async function startEverythingServer(): Promise<GoServer> {
  if (!info || 'missing' in info) throw new Error('Go programs are not built');
  const port = await freePort();
  const child = spawn(info.everythingServer, ['-http', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`everything-server did not start in 10 s: ${stderr}`)), 10_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes('listening at')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`everything-server exited (${code}): ${stderr}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    origin: `http://127.0.0.1:${port}`,
    process: child,
    // It prints no `ran` lines: nothing to wait for.
    ran: [],
    waitForRan: () => Promise.reject(new Error('everything-server does not report the calls it runs')),
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
