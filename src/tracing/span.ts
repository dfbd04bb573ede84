// The spans themselves. A recorded span is a small object that is at once the OpenTelemetry
// API's Span (what the request path writes to) and the SDK's ReadableSpan (what its batch
// processor and OTLP exporter read): made here instead of by the SDK's Tracer, which checks,
// copies and converts on every call. Measured side by side (npm run bench:spans; bench/RESULTS.md,
// "Traces"): the SDK's costs about twice as much a span, 3.6 against 1.5 µs CPU for a rejected
// request's span and 8.1 against 4.1 µs a span for a tools/call's, 2 to 4 µs more, and about
// 1.2 KB more allocated a span. The SDK still decides (its sampler), names (its id generator),
// batches and exports. The callers are ours and set only string, number and boolean attributes;
// client-supplied strings are cut (`cut`).

import {
  SpanStatusCode,
  TraceFlags,
  trace,
  type Attributes,
  type AttributeValue,
  type Context,
  type HrTime,
  type Link,
  type Span,
  type SpanContext,
  type SpanKind,
  type SpanStatus,
  type TimeInput,
} from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import {
  SamplingDecision,
  type IdGenerator,
  type ReadableSpan,
  type Sampler,
  type SpanProcessor,
  type TimedEvent,
} from '@opentelemetry/sdk-trace-base';

/** Client-supplied attribute values (a path, a user agent, a tool name) are cut to this many characters. */
export const MAX_ATTRIBUTE_LENGTH = 256;

export function cut(value: string): string {
  return value.length <= MAX_ATTRIBUTE_LENGTH ? value : value.slice(0, MAX_ATTRIBUTE_LENGTH);
}

const NO_EVENTS: TimedEvent[] = [];

// Span times are performance.now() readings placed on the wall clock by an offset read again at
// most once a second, so that a clock the system corrects is followed.
let offsetMs = Date.now() - performance.now();
let offsetReadAt = performance.now();
function now(): number {
  const reading = performance.now();
  if (reading - offsetReadAt > 1000) {
    offsetMs = Date.now() - reading;
    offsetReadAt = reading;
  }
  return reading;
}

function hrTime(milliseconds: number): HrTime {
  const seconds = Math.floor(milliseconds / 1000);
  const nanos = Math.round((milliseconds - seconds * 1000) * 1e6);
  return nanos >= 1e9 ? [seconds + 1, nanos - 1e9] : [seconds, nanos];
}

class RecordedSpan implements Span, ReadableSpan {
  readonly startTime: HrTime;
  endTime: HrTime = [0, 0];
  duration: HrTime = [0, 0];
  ended = false;
  status: SpanStatus = { code: SpanStatusCode.UNSET };
  readonly events = NO_EVENTS;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  private readonly startedAt: number;

  constructor(
    private readonly spans: Spans,
    private readonly context: SpanContext,
    readonly parentSpanContext: SpanContext | undefined,
    public name: string,
    readonly kind: SpanKind,
    readonly attributes: Attributes,
    readonly links: Link[],
    startTime: number,
  ) {
    this.startedAt = startTime;
    this.startTime = hrTime(startTime + offsetMs);
  }

  get resource(): Resource {
    return this.spans.resource;
  }

  get instrumentationScope(): InstrumentationScope {
    return this.spans.scope;
  }

  spanContext(): SpanContext {
    return this.context;
  }

  setAttribute(key: string, value: AttributeValue): this {
    if (!this.ended) this.attributes[key] = value;
    return this;
  }

  setAttributes(attributes: Attributes): this {
    if (!this.ended) Object.assign(this.attributes, attributes);
    return this;
  }

  setStatus(status: SpanStatus): this {
    if (!this.ended) this.status = status;
    return this;
  }

  updateName(name: string): this {
    if (!this.ended) this.name = name;
    return this;
  }

  addLink(link: Link): this {
    if (!this.ended) this.links.push(link);
    return this;
  }

  addLinks(links: Link[]): this {
    for (const link of links) this.addLink(link);
    return this;
  }

  // Events are not used by the sidecar's spans.
  addEvent(): this {
    return this;
  }

  recordException(): void {}

  isRecording(): boolean {
    return !this.ended;
  }

  /** `endTime`: a performance.now() reading; now when left out. */
  end(endTime?: TimeInput): void {
    if (this.ended) return;
    const endedAt = typeof endTime === 'number' ? endTime : now();
    this.endTime = hrTime(endedAt + offsetMs);
    this.duration = hrTime(Math.max(0, endedAt - this.startedAt));
    this.ended = true;
    this.spans.processor.onEnd(this);
  }
}

/** Starts spans: the SDK's sampler decides, its id generator names, the processor gets them ended. */
export class Spans {
  constructor(
    private readonly sampler: Sampler,
    private readonly ids: IdGenerator,
    readonly processor: SpanProcessor,
    readonly resource: Resource,
    readonly scope: InstrumentationScope,
  ) {}

  /** A span, child of the span in `parent` (or of a remote context there); `startTime` a performance.now() reading. */
  start(name: string, kind: SpanKind, parent: Context, attributes: Attributes = {}, startTime?: number, links: Link[] = []): Span {
    const parentContext = trace.getSpanContext(parent);
    const traceId = parentContext?.traceId ?? this.ids.generateTraceId();
    const spanId = this.ids.generateSpanId();
    const sampling = this.sampler.shouldSample(parent, traceId, name, kind, attributes, links);
    const context: SpanContext = {
      traceId,
      spanId,
      traceFlags: sampling.decision === SamplingDecision.RECORD_AND_SAMPLED ? TraceFlags.SAMPLED : TraceFlags.NONE,
      traceState: sampling.traceState ?? parentContext?.traceState,
    };
    if (sampling.decision === SamplingDecision.NOT_RECORD) return trace.wrapSpanContext(context);
    if (sampling.attributes !== undefined) Object.assign(attributes, sampling.attributes);
    return new RecordedSpan(this, context, parentContext, name, kind, attributes, links, startTime ?? now());
  }
}
