import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog } from '../helpers/log-capture.js';
import { freePort } from '../helpers/tools.js';

// Without an OTLP endpoint nothing of OpenTelemetry is loaded, and requests carry on as before
// tracing existed: the client's trace context passes to the upstream untouched, log lines name
// no trace, metrics are Prometheus text without tracing's counter.

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('tracing off', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar | undefined;

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
  });
  afterEach(async () => {
    await sidecar?.close();
    sidecar = undefined;
    await upstream.close();
    await issuer.close();
  });

  /** Runs the sidecar process through one accepted request; returns the OpenTelemetry modules it resolved. */
  async function modulesResolved(env: Record<string, string>): Promise<string[]> {
    const probe = join(mkdtempSync(join(tmpdir(), 'probe-')), 'modules.txt');
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', '--import', './test/helpers/module-probe.mjs', 'src/main.ts'], {
      env: {
        PATH: process.env.PATH,
        MODULE_PROBE_FILE: probe,
        ...testEnv(issuer, upstream, { PORT: String(port), LOG_LEVEL: 'info', ...env }),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the sidecar did not start in 15 s')), 15_000);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line.includes('"msg":"mcp-auth-sidecar started"')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const token = await issuer.mint();
    const response = await fetch(`http://127.0.0.1:${port}/mcp`, { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(200);
    child.kill('SIGTERM');
    await exited;
    return existsSync(probe) ? readFileSync(probe, 'utf8').split('\n').filter(Boolean) : [];
  }

  it('loads no OpenTelemetry module without an endpoint (and does with one: the probe works)', async () => {
    expect(await modulesResolved({})).toEqual([]);
    const collector = await freePort();
    expect(await modulesResolved({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector}` })).not.toEqual([]);
  }, 60_000);

  it('passes the client’s trace context on untouched, names no trace in log lines, serves plain text metrics', async () => {
    const log = captureLog();
    sidecar = await startSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'info' }), { logger: log.logger });
    expect(sidecar.app.tracing).toBeUndefined();
    const token = await issuer.mint();
    const response = await fetch(`${sidecar.url}/mcp`, {
      headers: { authorization: `Bearer ${token}`, traceparent: TRACEPARENT, tracestate: 'vendor=1' },
    });
    expect(response.status).toBe(200);
    await response.text();
    expect(upstream.seen.at(-1)!.headers).toMatchObject({ traceparent: TRACEPARENT, tracestate: 'vendor=1' });
    const metrics = await fetch(`${sidecar.adminUrl}/metrics`, { headers: { accept: 'application/openmetrics-text' } });
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await metrics.text();
    expect(text).not.toContain('mcp_auth_trace_spans_dropped');
    expect(text).not.toContain('# {');
    await sidecar.close();
    sidecar = undefined;
    const line = log.lines().find((l) => l.msg === 'request');
    expect(line).toBeDefined();
    expect(line).not.toHaveProperty('traceId');
  });
});
