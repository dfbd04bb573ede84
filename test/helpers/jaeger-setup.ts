// vitest globalSetup for the trace backend: starts one Jaeger all-in-one (in-memory storage, an
// OTLP/HTTP receiver and the query API on free loopback ports) per run, only when a test file
// that imports helpers/jaeger.ts is in the run. Workers reach it through inject('jaeger'); an
// absent binary reaches them as `missing` and they skip through skipMissing.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { lookup, needed } from './stack-setup.js';
import { freePort } from './tools.js';

export type JaegerInfo = { otlpUrl: string; queryUrl: string; log: string } | { missing: string };

declare module 'vitest' {
  export interface ProvidedContext {
    jaeger: JaegerInfo | null;
  }
}

/** Jaeger v2's collector configuration: OTLP/HTTP in, memory storage, the query API; nothing else listens. */
function configuration(otlpPort: number, queryPort: number, grpcPort: number): string {
  return `
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:${queryPort}
    grpc:
      endpoint: 127.0.0.1:${grpcPort}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${otlpPort}
processors:
  batch:
    timeout: 20ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (!needed('jaeger')) {
    project.provide('jaeger', null);
    return async () => {};
  }
  const binary = lookup('jaeger') ?? [join(homedir(), 'go', 'bin', 'jaeger')].find((path) => existsSync(path));
  if (binary === undefined) {
    project.provide('jaeger', { missing: 'jaeger' });
    return async () => {};
  }
  const dir = mkdtempSync(join(tmpdir(), 'jaeger-'));
  const [otlpPort, queryPort, grpcPort] = [await freePort(), await freePort(), await freePort()];
  const config = join(dir, 'config.yaml');
  writeFileSync(config, configuration(otlpPort, queryPort, grpcPort));
  const log = join(dir, 'jaeger.log');
  const out = openSync(log, 'a');
  const jaeger: ChildProcess = spawn(binary, ['--config', `file:${config}`], { detached: true, stdio: ['ignore', out, out] });
  const group = jaeger.pid!;
  process.once('exit', () => {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {
      /* already gone */
    }
  });
  // Not waited for here: the files that need it wait (helpers/jaeger.ts), the others run meanwhile.
  project.provide('jaeger', { otlpUrl: `http://127.0.0.1:${otlpPort}`, queryUrl: `http://127.0.0.1:${queryPort}`, log });
  return async () => {
    if (jaeger.exitCode === null) {
      const exited = new Promise((resolve) => jaeger.once('exit', resolve));
      process.kill(-group, 'SIGTERM');
      const timer = setTimeout(() => process.kill(-group, 'SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
}
