import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { randomBytes } from 'node:crypto';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';

// OTEL_TRACES_SAMPLER decides which requests are recorded: the parentbased_* samplers follow the
// sampled flag of a client's traceparent, the others ignore it (a client cannot turn sampling on).
// Either way the upstream learns the trace and the decision. Spans are read from the SDK's
// in-memory exporter in place of the OTLP one.

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

async function until<T>(read: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = read();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`nothing in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('sampling', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar | undefined;
  let exporter: InMemorySpanExporter;
  let log: CapturedLog;
  let token: string;

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    exporter = new InMemorySpanExporter();
    log = captureLog();
    token = await issuer.mint();
  });
  afterEach(async () => {
    await sidecar?.close();
    sidecar = undefined;
    await upstream.close();
    await issuer.close();
  });

  const start = async (env: Record<string, string>) => {
    sidecar = await startSidecar(
      testEnv(issuer, upstream, {
        LOG_LEVEL: 'info',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
        OTEL_BSP_SCHEDULE_DELAY: '10',
        ...env,
      }),
      { logger: log.logger, spanExporter: exporter },
    );
    return sidecar;
  };

  /** One request with the client's flag (or no traceparent): what was recorded and what the upstream got. */
  const send = async (running: RunningSidecar, flags: '00' | '01' | undefined) => {
    const traceId = hex(16);
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (flags !== undefined) headers.traceparent = `00-${traceId}-${hex(8)}-${flags}`;
    const lines = log.lines().length;
    const response = await fetch(`${running.url}/mcp`, { headers });
    expect(response.status).toBe(200);
    await response.text();
    // The request line is written when the response closes, after its span ended; then the export.
    const line = await until(() =>
      log
        .lines()
        .slice(lines)
        .find((l) => l.msg === 'request'),
    );
    await running.app.tracing!.flush();
    const forwarded = upstream.seen.at(-1)!.headers.traceparent as string;
    return {
      recorded: exporter.getFinishedSpans().length > 0,
      forwarded,
      sameTrace: flags === undefined || forwarded.slice(3, 35) === traceId,
      line,
    };
  };

  it.each([
    ['parentbased_always_on', '01', true],
    ['parentbased_always_on', '00', false],
    ['parentbased_always_off', '01', true],
    ['parentbased_always_off', undefined, false],
    ['parentbased_traceidratio', '01', true],
    ['parentbased_traceidratio', undefined, false],
    ['always_on', '00', true],
    ['always_off', '01', false],
    ['traceidratio', '01', false],
  ] as const)('%s with a client flag %s: recorded %s', async (sampler, flags, recorded) => {
    // A ratio of 0: only what follows a client's flag is kept.
    const running = await start({ OTEL_TRACES_SAMPLER: sampler, OTEL_TRACES_SAMPLER_ARG: '0' });
    const sent = await send(running, flags);
    expect(sent.recorded).toBe(recorded);
    expect(sent.sameTrace).toBe(true);
    // The upstream learns the decision: sampled when recorded.
    expect(sent.forwarded).toMatch(new RegExp(`^00-[0-9a-f]{32}-[0-9a-f]{16}-0${recorded ? 1 : 0}$`));
    // The request line names a trace only when it was recorded.
    if (recorded) expect(sent.line).toHaveProperty('traceId');
    else expect(sent.line).not.toHaveProperty('traceId');
  });

  // The same for a sampled flag in an MCP message's _meta (MCP 2026-07-28): a client cannot turn
  // sampling on there either unless the sampler follows parents.
  it.each([
    ['parentbased_always_off', true],
    ['always_off', false],
    ['traceidratio', false],
  ] as const)('%s with a sampled traceparent in _meta: recorded %s', async (sampler, recorded) => {
    const running = await start({ OTEL_TRACES_SAMPLER: sampler, OTEL_TRACES_SAMPLER_ARG: '0' });
    const traceId = hex(16);
    const response = await fetch(`${running.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/call',
        'mcp-name': 'lookup',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: {
          name: 'lookup',
          _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', traceparent: `00-${traceId}-${hex(8)}-01` },
        },
      }),
    });
    expect(response.status).toBe(200);
    await response.text();
    await until(() => log.lines().find((l) => l.msg === 'mcp'));
    await running.app.tracing!.flush();
    const spans = exporter.getFinishedSpans();
    expect(spans.some((span) => span.attributes['mcp.method.name'] === 'tools/call')).toBe(recorded);
    if (!recorded) expect(spans).toEqual([]);
    // The upstream is in _meta's trace either way, told the decision.
    expect(upstream.seen.at(-1)!.headers.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-0${recorded ? 1 : 0}$`));
  });
});
