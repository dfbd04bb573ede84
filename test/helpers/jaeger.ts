// The run's Jaeger (started once by jaeger-setup.ts) as the tests use it: the OTEL_* variables
// that point a sidecar at it, and traces read back through its HTTP query API.
//
//   const jaeger = useJaeger();                     // undefined: skipped (one line; CI=true fails)
//   beforeAll(() => jaeger!.ready());
//   const spans = await jaeger.trace(traceId, (spans) => spans.length >= 3);

import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import type { JaegerInfo } from './jaeger-setup.js';
import { skipMissing } from './tools.js';

export type AttributeValue = string | number | boolean;

/** A span as Jaeger stored it, in OpenTelemetry's words. */
export interface StoredSpan {
  traceId: string;
  spanId: string;
  parentId: string | undefined;
  /** Other spans this one names (OpenTelemetry links). */
  links: { traceId: string; spanId: string }[];
  name: string;
  kind: string | undefined;
  service: string;
  attributes: Record<string, AttributeValue>;
  /** OpenTelemetry's status code: ERROR, OK, or undefined when unset. */
  status: string | undefined;
}

export interface Jaeger {
  /** OTEL_EXPORTER_OTLP_ENDPOINT for a sidecar (Jaeger's OTLP/HTTP receiver). */
  readonly otlpUrl: string;
  readonly queryUrl: string;
  /** Resolves once the query API answers (bounded). */
  ready(): Promise<void>;
  /** The spans of a trace, once `until` holds for them (bounded wait; rejects with what was there). */
  trace(traceId: string, until: (spans: StoredSpan[]) => boolean, timeoutMs?: number): Promise<StoredSpan[]>;
  /** The traces of a service in the last minutes (Jaeger's search). */
  traces(service: string): Promise<StoredSpan[][]>;
}

/** `bytes` random bytes in hex: a trace or span id, or a suffix that keeps a service name apart. */
export const hex = (bytes: number) => randomBytes(bytes).toString('hex');

/** A client's trace context: its trace id, the id of its span, sampled. */
export function clientContext(): { traceId: string; spanId: string; traceparent: string } {
  const traceId = hex(16);
  const spanId = hex(8);
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

/** The env a sidecar needs to send every span to this Jaeger at once, under `service`. */
export function tracingEnv(jaeger: Jaeger, service: string): Record<string, string> {
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpUrl,
    OTEL_SERVICE_NAME: service,
    OTEL_BSP_SCHEDULE_DELAY: '20',
  };
}

interface JaegerJsonSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  processID: string;
  references?: { refType: string; traceID: string; spanID: string }[];
  tags?: { key: string; value: AttributeValue }[];
}

interface JaegerJsonTrace {
  spans: JaegerJsonSpan[];
  processes: Record<string, { serviceName: string }>;
}

function toStored(trace: JaegerJsonTrace): StoredSpan[] {
  return trace.spans.map((span) => {
    const attributes: Record<string, AttributeValue> = {};
    for (const tag of span.tags ?? []) attributes[tag.key] = tag.value;
    const references = span.references ?? [];
    const parent = references.find((r) => r.refType === 'CHILD_OF' && r.traceID === span.traceID);
    const kind = attributes['span.kind'];
    const status = attributes['otel.status_code'];
    return {
      traceId: span.traceID.padStart(32, '0'),
      spanId: span.spanID.padStart(16, '0'),
      parentId: parent?.spanID.padStart(16, '0'),
      links: references
        .filter((r) => r !== parent)
        .map((r) => ({ traceId: r.traceID.padStart(32, '0'), spanId: r.spanID.padStart(16, '0') })),
      name: span.operationName,
      kind: typeof kind === 'string' ? kind : undefined,
      service: trace.processes[span.processID]?.serviceName ?? '',
      attributes,
      status: typeof status === 'string' ? status : undefined,
    };
  });
}

const info: JaegerInfo | null = inject('jaeger');

/** The run's Jaeger, or undefined when its binary is absent (recorded as a skip; CI=true throws). */
export function useJaeger(): Jaeger | undefined {
  if (info === null) throw new Error('jaeger-setup did not start Jaeger for this file: does it import ../helpers/jaeger.js?');
  if ('missing' in info) {
    skipMissing(info.missing);
    return undefined;
  }
  const { otlpUrl, queryUrl, log } = info;
  const getJson = async <T>(path: string): Promise<T | undefined> => {
    const response = await fetch(`${queryUrl}${path}`);
    if (response.status === 404) return undefined;
    if (!response.ok) throw new Error(`Jaeger ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  };
  return {
    otlpUrl,
    queryUrl,
    async ready() {
      const deadline = Date.now() + 60_000;
      for (;;) {
        try {
          if ((await fetch(`${queryUrl}/api/services`)).ok) return;
        } catch {
          // not listening yet
        }
        if (Date.now() > deadline) throw new Error(`Jaeger did not answer in 60 s (log: ${log})`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    async trace(traceId, until, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      let spans: StoredSpan[] = [];
      for (;;) {
        const found = await getJson<{ data: JaegerJsonTrace[] }>(`/api/traces/${traceId}`);
        spans = found?.data[0] === undefined ? [] : toStored(found.data[0]);
        if (until(spans)) return spans;
        if (Date.now() > deadline) {
          throw new Error(`trace ${traceId} not as expected in ${timeoutMs} ms: ${JSON.stringify(spans, null, 1)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async traces(service) {
      const found = await getJson<{ data: JaegerJsonTrace[] }>(`/api/traces?service=${encodeURIComponent(service)}&limit=1000&lookback=1h`);
      return (found?.data ?? []).map(toStored);
    },
  };
}
