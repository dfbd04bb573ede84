// The standard OpenTelemetry variables the sidecar reads (the OpenTelemetry specification's
// environment variables and the OTLP exporter's), as rows of the one table (variables.ts), and
// what they add up to: the tracing settings, or none. No endpoint, OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none: no tracing at all, and nothing of OpenTelemetry is loaded.

import { boolean, choice, httpUrl, integer, optional, text, type Kind } from './kinds.js';
import type { Variable } from './variables.js';

export const SAMPLERS = [
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
  'always_on',
  'always_off',
  'traceidratio',
] as const;
export type SamplerName = (typeof SAMPLERS)[number];

export const DEFAULT_SERVICE_NAME = 'mcp-auth-sidecar';

/** Headers sent to the collector (often its credentials): logged and printed as their names only. */
export class SecretHeaders {
  readonly #values: Readonly<Record<string, string>>;
  constructor(values: Readonly<Record<string, string>>) {
    this.#values = values;
  }
  /** The headers as given: only for sending. */
  get values(): Readonly<Record<string, string>> {
    return this.#values;
  }
  toJSON(): Record<string, string> {
    return Object.fromEntries(Object.keys(this.#values).map((name) => [name, '***']));
  }
}

/**
 * `key=value,key2=value2` with percent-encoded values, as OTEL_RESOURCE_ATTRIBUTES and
 * OTEL_EXPORTER_OTLP_HEADERS are written (W3C Baggage's syntax without properties).
 */
export function parseKeyValues(value: string): Record<string, string> | undefined {
  const pairs: Record<string, string> = {};
  for (const item of value.split(',')) {
    if (item.trim() === '') continue;
    const equals = item.indexOf('=');
    if (equals <= 0) return undefined;
    const key = item.slice(0, equals).trim();
    let decoded: string;
    try {
      decoded = decodeURIComponent(item.slice(equals + 1).trim());
    } catch {
      return undefined;
    }
    // A header value goes on the wire: no line breaks or other control characters.
    // eslint-disable-next-line no-control-regex -- control characters are what is looked for
    if (key === '' || /[\x00-\x1f\x7f]/.test(key + decoded)) return undefined;
    pairs[key] = decoded;
  }
  return pairs;
}

function keyValues(): Kind<Readonly<Record<string, string>>> {
  return {
    accepts: '`key=value` pairs, comma separated, values percent-encoded',
    unset: () => ({}),
    parse: (value, field) => parseKeyValues(value) ?? field.expected('key=value pairs separated by commas, values percent-encoded'),
  };
}

function headers(): Kind<SecretHeaders> {
  return {
    accepts: '`name=value` pairs, comma separated, values percent-encoded',
    secret: 'it may hold the collector’s credentials',
    unset: () => new SecretHeaders({}),
    parse: (value, field) => {
      const parsed = parseKeyValues(value);
      return parsed === undefined
        ? field.expected('name=value pairs separated by commas, values percent-encoded')
        : new SecretHeaders(parsed);
    },
  };
}

function ratio(): Kind<number> {
  return {
    accepts: '0 to 1',
    parse: (value, field) => (/^(0(\.\d+)?|1(\.0*)?|\.\d+)$/.test(value) ? Number(value) : field.expected('a number from 0 to 1')),
  };
}

/** An OTLP endpoint: an http(s) URL; one with credentials is refused without being shown (they belong in the headers). */
function endpoint(): Kind<string | undefined> {
  const url = optional(httpUrl());
  return {
    ...url,
    parse(value, field) {
      if (/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(value)) {
        return field.problem(`${field.name}: expected a URL without credentials (value not shown; put them in OTEL_EXPORTER_OTLP_HEADERS)`);
      }
      return url.parse(value, field);
    },
  };
}

const row = <const K extends string, T>(variable: Variable<K, T>): Variable<K, T> => variable;

export const OTEL_VARIABLES = [
  row({
    name: 'OTEL_EXPORTER_OTLP_ENDPOINT',
    key: 'otelEndpoint',
    kind: endpoint(),
    meaning:
      'OTLP/HTTP collector for traces, e.g. `http://otel-collector:4318` (spans go to its `/v1/traces`); empty: no tracing, nothing of OpenTelemetry loaded (see [Observability](observability.md#traces))',
  }),
  row({
    name: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
    key: 'otelTracesEndpoint',
    kind: endpoint(),
    shown: 'from `OTEL_EXPORTER_OTLP_ENDPOINT`',
    meaning: 'the traces URL itself, used as given (instead of the endpoint above + `/v1/traces`)',
  }),
  row({
    name: 'OTEL_EXPORTER_OTLP_PROTOCOL',
    key: 'otelProtocol',
    kind: choice(['http/protobuf'], 'http/protobuf (OTLP over HTTP, usually port 4318; grpc and http/json are not built in)'),
    default: 'http/protobuf',
    meaning: 'how spans are sent: protobuf over HTTP only',
  }),
  row({
    name: 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL',
    key: 'otelTracesProtocol',
    kind: choice(['http/protobuf'], 'http/protobuf (OTLP over HTTP, usually port 4318; grpc and http/json are not built in)'),
    default: 'http/protobuf',
    meaning: 'the same, for traces',
  }),
  row({
    name: 'OTEL_EXPORTER_OTLP_HEADERS',
    key: 'otelHeaders',
    kind: headers(),
    meaning: 'headers sent with every export, e.g. `authorization=Bearer%20…`; never logged',
  }),
  row({
    name: 'OTEL_EXPORTER_OTLP_TRACES_HEADERS',
    key: 'otelTracesHeaders',
    kind: headers(),
    meaning: 'more headers for trace exports (a name in both: this one wins); never logged',
  }),
  row({
    name: 'OTEL_EXPORTER_OTLP_TIMEOUT',
    key: 'otelTimeoutMs',
    kind: integer(1, 600_000),
    default: '10000',
    meaning: 'milliseconds an export may take; a collector slower than this loses the batch (counted, never a request)',
  }),
  row({
    name: 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT',
    key: 'otelTracesTimeoutMs',
    kind: integer(1, 600_000),
    default: (earlier) => String(earlier('OTEL_EXPORTER_OTLP_TIMEOUT')),
    shown: 'from `OTEL_EXPORTER_OTLP_TIMEOUT`',
    meaning: 'the same, for traces',
  }),
  row({
    name: 'OTEL_SERVICE_NAME',
    key: 'otelServiceName',
    kind: optional(text()),
    shown: `\`${DEFAULT_SERVICE_NAME}\``,
    meaning: 'the `service.name` of the spans (before `service.name` in `OTEL_RESOURCE_ATTRIBUTES`)',
  }),
  row({
    name: 'OTEL_RESOURCE_ATTRIBUTES',
    key: 'otelResourceAttributes',
    kind: keyValues(),
    meaning: 'more resource attributes, e.g. `k8s.pod.name=…,k8s.namespace.name=…`',
  }),
  row({
    name: 'OTEL_TRACES_SAMPLER',
    key: 'otelTracesSampler',
    kind: choice(SAMPLERS),
    default: 'parentbased_always_on',
    meaning:
      '`parentbased_*`: a request with a client trace context follows its sampled flag; `always_on`, `always_off`, `traceidratio`: the sidecar decides alone, so a client cannot turn sampling on',
  }),
  row({
    name: 'OTEL_TRACES_SAMPLER_ARG',
    key: 'otelTracesSamplerArg',
    kind: ratio(),
    default: '1',
    meaning: 'the share of traces kept by `traceidratio` and `parentbased_traceidratio`',
  }),
  row({
    name: 'OTEL_BSP_MAX_QUEUE_SIZE',
    key: 'otelQueueSize',
    kind: integer(1, 1_000_000),
    default: '2048',
    meaning: 'ended spans waiting for export at most; more are dropped and counted (`mcp_auth_trace_spans_dropped_total`)',
  }),
  row({
    name: 'OTEL_BSP_SCHEDULE_DELAY',
    key: 'otelScheduleDelayMs',
    kind: integer(0, 600_000),
    default: '5000',
    meaning: 'milliseconds between exports (sooner when 512 spans wait)',
  }),
  row({
    name: 'OTEL_TRACES_EXPORTER',
    key: 'otelTracesExporter',
    kind: choice(['otlp', 'none'], 'otlp or none (spans go out over OTLP/HTTP only)'),
    default: 'otlp',
    meaning: '`none` turns tracing off',
  }),
  row({
    name: 'OTEL_SDK_DISABLED',
    key: 'otelSdkDisabled',
    kind: boolean(),
    default: 'false',
    meaning: '`true` turns tracing off',
  }),
] as const;

type OtelRow = (typeof OTEL_VARIABLES)[number];
type ValueOf<V> = V extends Variable<string, infer T> ? T : never;
type OtelConfig = { [V in OtelRow as V['key']]: ValueOf<V> };

export interface TracingSettings {
  /** The OTLP/HTTP traces URL itself. */
  readonly tracesUrl: string;
  /** Sent with every export: never logged. */
  readonly headers: SecretHeaders;
  readonly timeoutMs: number;
  readonly serviceName: string;
  readonly resourceAttributes: Readonly<Record<string, string>>;
  readonly sampler: SamplerName;
  /** The ratio of the *traceidratio samplers, 0 to 1. */
  readonly samplerRatio: number;
  /** Ended spans waiting for export at most; more are dropped and counted. */
  readonly maxQueueSize: number;
  readonly scheduleDelayMs: number;
}

/** What the OTEL_* variables add up to; undefined when tracing is off. */
export function tracingSettings(config: OtelConfig): TracingSettings | undefined {
  // The signal's own endpoint is used as given; the base one gets the signal's path (the specification's rule).
  const tracesUrl = config.otelTracesEndpoint ?? config.otelEndpoint?.replace(/\/?$/, '/v1/traces');
  if (tracesUrl === undefined || config.otelSdkDisabled || config.otelTracesExporter === 'none') return undefined;
  return {
    tracesUrl,
    headers: new SecretHeaders({ ...config.otelHeaders.values, ...config.otelTracesHeaders.values }),
    timeoutMs: config.otelTracesTimeoutMs,
    serviceName: config.otelServiceName ?? config.otelResourceAttributes['service.name'] ?? DEFAULT_SERVICE_NAME,
    resourceAttributes: config.otelResourceAttributes,
    sampler: config.otelTracesSampler,
    samplerRatio: config.otelTracesSamplerArg,
    maxQueueSize: config.otelQueueSize,
    scheduleDelayMs: config.otelScheduleDelayMs,
  };
}
