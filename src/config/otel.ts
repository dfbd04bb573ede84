// The standard OpenTelemetry variables the sidecar reads (OpenTelemetry's "Environment Variable
// Specification" and the OTLP exporter's), parsed like every other variable: one message per
// problem, naming the variable. No endpoint, OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none:
// no tracing at all (undefined), and nothing of OpenTelemetry is loaded.

export const SAMPLERS = [
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
  'always_on',
  'always_off',
  'traceidratio',
] as const;
export type SamplerName = (typeof SAMPLERS)[number];

export interface TracingSettings {
  /** The OTLP/HTTP traces URL itself (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or the base endpoint + /v1/traces). */
  readonly tracesUrl: string;
  /** Sent with every export (often a collector's credentials): never logged. */
  readonly headers: Readonly<Record<string, string>>;
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

export const TRACING_DEFAULTS = {
  serviceName: 'mcp-auth-sidecar',
  sampler: 'parentbased_always_on' as SamplerName,
  timeoutMs: 10_000,
  maxQueueSize: 2048,
  scheduleDelayMs: 5000,
};

type Env = Record<string, string | undefined>;

const show = (value: string) => JSON.stringify(value);

/**
 * `key=value,key2=value2` with percent-encoded values, as OTEL_RESOURCE_ATTRIBUTES and
 * OTEL_EXPORTER_OTLP_HEADERS are written (W3C Baggage's syntax without properties).
 */
export function parseKeyValues(text: string): Record<string, string> | undefined {
  const pairs: Record<string, string> = {};
  for (const item of text.split(',')) {
    if (item.trim() === '') continue;
    const equals = item.indexOf('=');
    if (equals <= 0) return undefined;
    const key = item.slice(0, equals).trim();
    let value: string;
    try {
      value = decodeURIComponent(item.slice(equals + 1).trim());
    } catch {
      return undefined;
    }
    // A header value goes on the wire: no line breaks or other control characters.
    // eslint-disable-next-line no-control-regex -- control characters are what is looked for
    if (key === '' || /[\x00-\x1f\x7f]/.test(key + value)) return undefined;
    pairs[key] = value;
  }
  return pairs;
}

/** The tracing settings of an environment, or undefined when tracing is off; problems are pushed. */
export function readTracingSettings(env: Env, problems: string[]): TracingSettings | undefined {
  const raw = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };
  const disabled = raw('OTEL_SDK_DISABLED');
  if (disabled !== undefined && !/^(true|false)$/i.test(disabled)) {
    problems.push(`OTEL_SDK_DISABLED=${show(disabled)}: expected true or false`);
  }
  const exporter = raw('OTEL_TRACES_EXPORTER')?.toLowerCase();
  if (exporter !== undefined && exporter !== 'otlp' && exporter !== 'none') {
    problems.push(`OTEL_TRACES_EXPORTER=${show(exporter)}: expected otlp or none (spans go out over OTLP/HTTP only)`);
  }
  for (const name of ['OTEL_EXPORTER_OTLP_PROTOCOL', 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL']) {
    const protocol = raw(name);
    if (protocol !== undefined && protocol !== 'http/protobuf') {
      problems.push(
        `${name}=${show(protocol)}: expected http/protobuf (OTLP over HTTP, usually port 4318; grpc and http/json are not built in)`,
      );
    }
  }
  const url = (name: string): URL | undefined => {
    const value = raw(name);
    if (value === undefined) return undefined;
    let parsed: URL | undefined;
    try {
      parsed = new URL(value);
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      problems.push(`${name}=${show(value)}: expected an http:// or https:// URL, e.g. http://otel-collector:4318`);
      return undefined;
    }
    if (parsed.username !== '' || parsed.password !== '') {
      problems.push(`${name}: expected a URL without credentials (value not shown; put them in OTEL_EXPORTER_OTLP_HEADERS)`);
      return undefined;
    }
    return parsed;
  };
  const tracesEndpoint = url('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const baseEndpoint = url('OTEL_EXPORTER_OTLP_ENDPOINT');
  // The signal's own endpoint is used as given; the base one gets the signal's path (the specification's rule).
  const tracesUrl = tracesEndpoint?.href ?? (baseEndpoint === undefined ? undefined : `${baseEndpoint.href.replace(/\/$/, '')}/v1/traces`);

  const headers: Record<string, string> = {};
  for (const name of ['OTEL_EXPORTER_OTLP_HEADERS', 'OTEL_EXPORTER_OTLP_TRACES_HEADERS']) {
    const value = raw(name);
    if (value === undefined) continue;
    const parsed = parseKeyValues(value);
    // The value may hold a collector's credentials: name the variable, never echo it.
    if (parsed === undefined)
      problems.push(`${name}: expected name=value pairs separated by commas, values percent-encoded (value not shown)`);
    else Object.assign(headers, parsed);
  }
  const resourceText = raw('OTEL_RESOURCE_ATTRIBUTES');
  const resourceAttributes = resourceText === undefined ? {} : parseKeyValues(resourceText);
  if (resourceAttributes === undefined) {
    problems.push(`OTEL_RESOURCE_ATTRIBUTES=${show(resourceText!)}: expected key=value pairs separated by commas, values percent-encoded`);
  }

  const integer = (names: string[], fallback: number, min: number, max: number): number => {
    for (const name of names) {
      const value = raw(name);
      if (value === undefined) continue;
      if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
        problems.push(`${name}=${show(value)}: expected a whole number from ${min} to ${max}`);
        return fallback;
      }
      return Number(value);
    }
    return fallback;
  };
  const timeoutMs = integer(['OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', 'OTEL_EXPORTER_OTLP_TIMEOUT'], TRACING_DEFAULTS.timeoutMs, 1, 600_000);
  const maxQueueSize = integer(['OTEL_BSP_MAX_QUEUE_SIZE'], TRACING_DEFAULTS.maxQueueSize, 1, 1_000_000);
  const scheduleDelayMs = integer(['OTEL_BSP_SCHEDULE_DELAY'], TRACING_DEFAULTS.scheduleDelayMs, 0, 600_000);

  const samplerText = raw('OTEL_TRACES_SAMPLER')?.toLowerCase() ?? TRACING_DEFAULTS.sampler;
  const sampler = (SAMPLERS as readonly string[]).includes(samplerText) ? (samplerText as SamplerName) : undefined;
  if (sampler === undefined) problems.push(`OTEL_TRACES_SAMPLER=${show(samplerText)}: expected one of ${SAMPLERS.join(', ')}`);
  const ratioText = raw('OTEL_TRACES_SAMPLER_ARG');
  let samplerRatio = 1;
  if (ratioText !== undefined && sampler?.endsWith('traceidratio') === true) {
    samplerRatio = Number(ratioText);
    if (!/^\d*\.?\d+$/.test(ratioText) || samplerRatio > 1) {
      problems.push(`OTEL_TRACES_SAMPLER_ARG=${show(ratioText)}: expected the sampled ratio, a number from 0 to 1`);
      samplerRatio = 1;
    }
  }

  if (disabled?.toLowerCase() === 'true' || exporter === 'none' || tracesUrl === undefined) return undefined;
  return {
    tracesUrl,
    headers,
    timeoutMs,
    serviceName: raw('OTEL_SERVICE_NAME') ?? resourceAttributes?.['service.name'] ?? TRACING_DEFAULTS.serviceName,
    resourceAttributes: resourceAttributes ?? {},
    sampler: sampler ?? TRACING_DEFAULTS.sampler,
    samplerRatio,
    maxQueueSize,
    scheduleDelayMs,
  };
}
