// npm run bench:spans: what a span costs made by src/tracing/span.ts against the SDK's own
// Tracer, side by side in one process. Both start their spans through the same code
// (request-trace.ts, mcp-trace.ts: the same names, attributes, parents and ends), with the same
// sampler (the default, parentbased_always_on), id generator (RandomIdGenerator), resource and
// processor chain (export.ts's pipeline: its bounded queue before the SDK's BatchSpanProcessor,
// here to an exporter that takes every batch and does nothing). The shapes are the sidecar's:
// the request span of a rejected request (no token: 401), and a tools/call message span with its
// two decision children (tool policy, rate limits) under an accepted request's span. Rounds
// alternate which goes first; CPU time by process.cpuUsage (everything the process did: making,
// ending, queueing, batching), heap allocated from the heap's size and what each collection freed
// (v8.GCProfiler). BENCH_ROUNDS (default 11, the first two a warm-up), BENCH_ITERATIONS (default
// 20000 shapes a round).

import { SpanKind, type Attributes, type Context, type Link, type TimeInput } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { BasicTracerProvider, RandomIdGenerator, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { GCProfiler } from 'node:v8';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { AuthState } from '../src/auth/authenticate.js';
import type { TracingSettings } from '../src/config/otel.js';
import type { Caller, ClientMessage, Decision, Guard } from '../src/mcp/guard.js';
import { VERSION } from '../src/lib/version.js';
import { createSpansDropped } from '../src/observability/metrics.js';
import { samplerOf, startPipeline, type TracingPipeline } from '../src/tracing/export.js';
import type { MessageScope } from '../src/tracing/mcp-trace.js';
import { RequestTrace, upstreamTarget } from '../src/tracing/request-trace.js';
import type { Spans } from '../src/tracing/span.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 11);
const WARM_UP = 2;
const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 20_000);
/** Shapes made between two turns of the event loop (the batch processor exports on its turn). */
const CHUNK = 100;

const settings = {
  sampler: 'parentbased_always_on',
  samplerRatio: 1,
  maxQueueSize: 2048,
  scheduleDelayMs: 5000,
  timeoutMs: 10_000,
  serviceName: 'bench',
  resourceAttributes: {},
} as unknown as TracingSettings;

/** Takes every batch, exports nothing: what is measured is the making, not OTLP. */
class NoExporter implements SpanExporter {
  spans = 0;
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.spans += spans.length;
    done({ code: ExportResultCode.SUCCESS });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const registry = new Registry();
const dropped = createSpansDropped(registry);
const logger = pino({ level: 'silent' });

function pipeline(): { pipeline: TracingPipeline; exporter: NoExporter } {
  const exporter = new NoExporter();
  return { pipeline: startPipeline(settings, dropped, logger, exporter), exporter };
}

/** src/tracing as the sidecar runs it. */
const own = pipeline();

/** The SDK's Tracer behind the same `start` (the same pipeline's processor and resource). */
const sdk = pipeline();
const provider = new BasicTracerProvider({
  sampler: samplerOf(settings),
  idGenerator: new RandomIdGenerator(),
  resource: sdk.pipeline.spans.resource,
  spanProcessors: [sdk.pipeline.spans.processor],
});
const tracer = provider.getTracer('mcp-auth-sidecar', VERSION);
const sdkSpans = {
  start: (name: string, kind: SpanKind, parent: Context, attributes: Attributes = {}, startTime?: TimeInput, links: Link[] = []) =>
    tracer.startSpan(name, { kind, attributes, links, startTime }, parent),
} as unknown as Spans;

// What a request looks like to the hooks.
const target = upstreamTarget('http://127.0.0.1:8080');
const request = {
  method: 'POST',
  url: '/mcp',
  protocol: 'http',
  routeOptions: { url: '/mcp' },
  headers: { 'user-agent': 'bench-client/1.0', 'content-type': 'application/json' },
  raw: { httpVersion: '1.1' },
  ip: '127.0.0.1',
} as unknown as FastifyRequest;
const rejectedResponse = { statusCode: 401, headersSent: true } as ServerResponse;
const rejected: AuthState = { decision: 'reject', reason: 'missing_token', identity: undefined };

const caller: Caller = { identity: { user: 'alice', subject: 'f3b1c0de', email: undefined, groups: undefined }, sessionId: 'session-1' };
const message: ClientMessage = {
  method: 'tools/call',
  id: 7,
  params: { name: 'search', arguments: { query: 'q', limit: 5 } },
  tool: 'search',
  prompt: undefined,
  resource: undefined,
  arguments: { query: 'q', limit: 5 },
};
const allow: Decision = { effect: 'allow', rule: 'readers' };
// The two guards' spans as the tool policy and the rate limits describe an allowed call.
const guards: Guard[] = [
  {
    name: 'tool policy',
    judge: () => allow,
    describe: () => ({ 'mcp_auth.policy.decision': 'allow', 'mcp_auth.policy.dry_run': false, 'mcp_auth.policy.rule': 'readers' }),
  },
  {
    name: 'rate limits',
    judge: () => allow,
    describe: () => ({ 'mcp_auth.rate_limit.store': 'memory', 'mcp_auth.rate_limit.limited': false }),
  },
];
const scopeOf = (spans: Spans): Pick<MessageScope, 'protocolVersion' | 'listed' | 'label'> & { spans: Spans } => ({
  spans,
  protocolVersion: '2025-11-25',
  listed: () => true,
  label: (method) => method,
});

interface Shape {
  name: string;
  spans: number;
  make(spans: Spans, parent: RequestTrace): void;
}
const shapes: Shape[] = [
  {
    name: 'rejected request (no token): its request span',
    spans: 1,
    make(spans) {
      new RequestTrace(spans, target, request).end(request, rejectedResponse, rejected);
    },
  },
  {
    name: 'tools/call: message span + two decision spans',
    spans: 3,
    make(spans, parent) {
      const [trace] = parent.messages([message], caller, scopeOf(spans))!;
      for (const guard of guards) void trace!.judge(guard, message, caller);
      trace!.end('result', undefined);
    },
  },
];

const gcProfiler = new GCProfiler();
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Measured {
  micros: number;
  bytes: number;
}

async function measure(shape: Shape, spans: Spans): Promise<Measured> {
  const parent = new RequestTrace(spans, target, request);
  await turn();
  const heapBefore = process.memoryUsage().heapUsed;
  gcProfiler.start();
  const before = process.cpuUsage();
  for (let done = 0; done < ITERATIONS; done += CHUNK) {
    for (let i = 0; i < CHUNK; i++) shape.make(spans, parent);
    await turn();
  }
  const cpu = process.cpuUsage(before);
  const profile = gcProfiler.stop();
  const heapAfter = process.memoryUsage().heapUsed;
  const freed = profile.statistics.reduce(
    (sum, gc) => sum + gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize,
    0,
  );
  const count = ITERATIONS * shape.spans;
  return { micros: (cpu.user + cpu.system) / count, bytes: (heapAfter - heapBefore + freed) / count };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

const implementations: [string, Spans][] = [
  ['span.ts', own.pipeline.spans],
  ['SDK Tracer', sdkSpans],
];
const results = new Map<string, Measured[]>();
const loads: number[] = [loadavg()[0]!];
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? implementations : [...implementations].reverse();
  for (const shape of shapes) {
    for (const [name, spans] of order) {
      const measured = await measure(shape, spans);
      if (round < WARM_UP) continue;
      const key = `${shape.name}|${name}`;
      results.set(key, [...(results.get(key) ?? []), measured]);
    }
  }
  loads.push(loadavg()[0]!);
  process.stderr.write(`round ${round + 1}/${ROUNDS} done, load ${loadavg()[0]!.toFixed(1)}\n`);
}
await own.pipeline.flush();
await sdk.pipeline.flush();
const lost = (await registry.getSingleMetric('mcp_auth_trace_spans_dropped_total')!.get()).values.reduce((sum, v) => sum + v.value, 0);
if (lost > 0) throw new Error(`${lost} spans dropped: what was made is not what was exported`);
if (own.exporter.spans === 0 || sdk.exporter.spans === 0) throw new Error('no spans reached an exporter');

const lines = [
  '| shape | span.ts µs CPU a span | SDK Tracer µs CPU a span | SDK − span.ts µs | SDK ÷ span.ts (median of rounds) | bytes allocated a span: span.ts / SDK |',
  '|---|---:|---:|---:|---:|---:|',
  ...shapes.map((shape) => {
    const mine = results.get(`${shape.name}|span.ts`)!;
    const theirs = results.get(`${shape.name}|SDK Tracer`)!;
    const ratios = mine.map((m, i) => theirs[i]!.micros / m.micros);
    const a = median(mine.map((m) => m.micros));
    const b = median(theirs.map((m) => m.micros));
    return (
      `| ${shape.name} | ${a.toFixed(2)} | ${b.toFixed(2)} | ${(b - a).toFixed(2)} | ${median(ratios).toFixed(2)} ` +
      `(${ratios.map((r) => r.toFixed(2)).join(' ')}) | ${median(mine.map((m) => m.bytes)).toFixed(0)} / ${median(theirs.map((m) => m.bytes)).toFixed(0)} |`
    );
  }),
  '',
  `Exported (to nothing): span.ts ${own.exporter.spans}, SDK ${sdk.exporter.spans} spans; none dropped. ${ROUNDS - WARM_UP} rounds ` +
    `(${WARM_UP} more as warm-up) of ${ITERATIONS} shapes each, alternating which goes first. Load average (1 min) ` +
    `${Math.min(...loads).toFixed(1)} to ${Math.max(...loads).toFixed(1)}. ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}.`,
];
console.log(lines.join('\n'));
await own.pipeline.shutdown(1000);
await sdk.pipeline.shutdown(1000);
