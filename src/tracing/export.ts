// Where spans go: the SDK's sampler and id generator (span.ts starts spans with them), the
// resource, and the export over OTLP/HTTP (protobuf). Nothing is registered globally.
//
// Export never touches a request: ended spans wait in a bounded queue (OTEL_BSP_MAX_QUEUE_SIZE)
// for the SDK's BatchSpanProcessor; a span that does not fit, or whose export fails (collector
// down, slow past OTEL_EXPORTER_OTLP_TIMEOUT, refusing), is counted in
// mcp_auth_trace_spans_dropped_total{reason} and told in one warning line a minute at most.
// The spans are made in span.ts, named and attributed in request-trace.ts, started from tracing.ts.

import { TraceFlags } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  RandomIdGenerator,
  TraceIdRatioBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import type { TracingSettings } from '../config/otel.js';
import { VERSION } from '../lib/version.js';
import { Spans } from './span.js';

/** At most one warning line about dropped spans in this time. */
const WARN_INTERVAL_MS = 60_000;
/** Spans sent to the collector in one request at most. */
const MAX_EXPORT_BATCH = 512;

export type DropReason = 'queue_full' | 'export_failed';

/** Counts spans that never reach the collector and says so, at most once a minute. */
export class DropReport {
  private unreported = 0;
  private lastWarnedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly counter: Counter<'reason'>,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  dropped(count: number, reason: DropReason, cause?: string): void {
    this.counter.inc({ reason }, count);
    this.unreported += count;
    const now = this.now();
    if (now - this.lastWarnedAt < WARN_INTERVAL_MS) return;
    this.lastWarnedAt = now;
    this.logger.warn(
      { dropped: this.unreported, reason, cause: cause?.slice(0, 200) },
      'traces: spans dropped (the collector is down, slow or refusing, or the queue is full); requests are not affected',
    );
    this.unreported = 0;
  }
}

/**
 * The SDK's BatchSpanProcessor behind a count of the spans it holds: a span that would go past
 * `maxQueueSize` is dropped here, where it can be counted (the SDK drops it silently).
 */
class BoundedProcessor implements SpanProcessor {
  private queued = 0;

  constructor(
    private readonly batch: BatchSpanProcessor,
    private readonly maxQueueSize: number,
    private readonly report: DropReport,
  ) {}

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.queued >= this.maxQueueSize) {
      this.report.dropped(1, 'queue_full');
      return;
    }
    this.queued++;
    this.batch.onEnd(span);
  }

  /** The batch processor handed `count` spans to the exporter: they have left its queue. */
  exported(count: number): void {
    this.queued -= count;
  }

  forceFlush(): Promise<void> {
    return this.batch.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.batch.shutdown();
  }
}

/** The OTLP exporter, telling the processor what left its queue and the report what failed. */
class ReportingExporter implements SpanExporter {
  processor: BoundedProcessor | undefined;

  constructor(
    private readonly inner: SpanExporter,
    private readonly report: DropReport,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.processor?.exported(spans.length);
    this.inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS) this.report.dropped(spans.length, 'export_failed', result.error?.message);
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** OTEL_TRACES_SAMPLER: the parentbased_* samplers follow a client's sampled flag; the others decide alone. */
export function samplerOf(settings: Pick<TracingSettings, 'sampler' | 'samplerRatio'>): Sampler {
  const name = settings.sampler;
  const root = name.endsWith('always_on')
    ? new AlwaysOnSampler()
    : name.endsWith('always_off')
      ? new AlwaysOffSampler()
      : new TraceIdRatioBasedSampler(settings.samplerRatio);
  return name.startsWith('parentbased_') ? new ParentBasedSampler({ root }) : root;
}

export interface TracingPipeline {
  readonly spans: Spans;
  /** Exports what is queued, waiting `timeoutMs` at most; never rejects. */
  shutdown(timeoutMs: number): Promise<void>;
  /** Exports what is queued now (tests; the operator has the schedule). */
  flush(): Promise<void>;
}

/** The sampler, the resource and the export pipeline of one app. */
export function startPipeline(
  settings: TracingSettings,
  dropped: Counter<'reason'>,
  logger: Logger,
  exporter: SpanExporter = new OTLPTraceExporter({
    url: settings.tracesUrl,
    headers: { ...settings.headers.values },
    timeoutMillis: settings.timeoutMs,
    // One export at a time is what the batch processor asks for; a second is a forced flush.
    concurrencyLimit: 2,
  }),
): TracingPipeline {
  const report = new DropReport(dropped, logger);
  const reporting = new ReportingExporter(exporter, report);
  const batch = new BatchSpanProcessor(reporting, {
    maxQueueSize: settings.maxQueueSize,
    maxExportBatchSize: Math.min(MAX_EXPORT_BATCH, settings.maxQueueSize),
    scheduledDelayMillis: settings.scheduleDelayMs,
    // The exporter gives up first (its own timeout), so batches never overlap.
    exportTimeoutMillis: settings.timeoutMs + 1000,
  });
  const processor = new BoundedProcessor(batch, settings.maxQueueSize, report);
  reporting.processor = processor;
  const resource = defaultResource().merge(
    resourceFromAttributes({ 'service.version': VERSION, ...settings.resourceAttributes, 'service.name': settings.serviceName }),
  );
  const spans = new Spans(samplerOf(settings), new RandomIdGenerator(), processor, resource, {
    name: 'mcp-auth-sidecar',
    version: VERSION,
  });
  return {
    spans,
    async shutdown(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.max(0, timeoutMs));
        timer.unref();
      });
      await Promise.race([processor.shutdown().catch(() => undefined), late]);
      clearTimeout(timer);
    },
    flush: () => processor.forceFlush(),
  };
}
