// A real Prometheus scraping one sidecar's admin port every second, in a folder of its own;
// startScrapedStack starts the sidecar (with its issuer and upstream) too.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './tools.js';
import { startStack, type TestStack } from './sidecar.js';
import type { AppOptions } from '../../src/app.js';

export interface RunningPrometheus {
  /** Its HTTP API, e.g. `${api}/api/v1/query?query=...`. */
  readonly api: string;
  close(): void;
}

/** Prometheus (`binary`) scraping `target` (host:port) as the job mcp-auth-sidecar; `exemplars` turns exemplar storage on. */
export async function startPrometheus(binary: string, target: string, { exemplars = false } = {}): Promise<RunningPrometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'prometheus-'));
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      'scrape_configs:',
      '  - job_name: mcp-auth-sidecar',
      `    static_configs: [{ targets: ["${target}"] }]`,
      '',
    ].join('\n'),
  );
  const port = await freePort();
  const server = spawn(
    binary,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      ...(exemplars ? ['--enable-feature=exemplar-storage'] : []),
      '--log.level=error',
    ],
    { stdio: 'ignore' },
  );
  return {
    api: `http://127.0.0.1:${port}`,
    close() {
      server.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface ScrapedStack extends TestStack {
  /** Prometheus's HTTP API. */
  readonly api: string;
}

/** A TestStack (sidecar.ts startStack: `env`, `options`) whose admin port Prometheus (`binary`) scrapes. */
export async function startScrapedStack(
  binary: string,
  { env = {}, options = {}, exemplars = false }: { env?: Record<string, string>; options?: AppOptions; exemplars?: boolean } = {},
): Promise<ScrapedStack> {
  const stack = await startStack(env, options);
  try {
    const prometheus = await startPrometheus(binary, new URL(stack.sidecar.adminUrl).host, { exemplars });
    return {
      ...stack,
      api: prometheus.api,
      async close() {
        prometheus.close();
        await stack.close();
      },
    };
  } catch (error) {
    await stack.close();
    throw error;
  }
}

/** Polls Prometheus until `read` returns a value; Prometheus scrapes on its own clock, so this is bounded polling. */
export async function untilPrometheus<T>(read: () => Promise<T | undefined>, deadlineMs = 30_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await read().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('Prometheus did not get there before the deadline');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
