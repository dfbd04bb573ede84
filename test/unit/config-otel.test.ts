import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { MINIMAL_ENV, problems } from '../helpers/config.js';
import { tracingSettings } from '../../src/config/otel.js';

// The standard OTEL_* variables: what they add up to, and bad values told like any other
// variable's, never showing a collector's credentials.

const settings = (env: Record<string, string>) => tracingSettings(loadConfig({ ...MINIMAL_ENV, ...env }));

describe('tracing from the OTEL_* variables', () => {
  it('is off without an endpoint, with OTEL_SDK_DISABLED=true and with OTEL_TRACES_EXPORTER=none', () => {
    expect(settings({})).toBeUndefined();
    expect(settings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' })).toBeUndefined();
    expect(settings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_TRACES_EXPORTER: 'none' })).toBeUndefined();
  });

  it('sends to the base endpoint + /v1/traces, or to the traces endpoint as given', () => {
    expect(settings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })?.tracesUrl).toBe('http://collector:4318/v1/traces');
    expect(settings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://c.example/otlp/' })?.tracesUrl).toBe('https://c.example/otlp/v1/traces');
    expect(
      settings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://other:4318/traces' })
        ?.tracesUrl,
    ).toBe('http://other:4318/traces');
  });

  it('has the specification’s defaults, and the sidecar’s name as the service', () => {
    expect(settings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toMatchObject({
      timeoutMs: 10_000,
      serviceName: 'mcp-auth-sidecar',
      resourceAttributes: {},
      sampler: 'parentbased_always_on',
      samplerRatio: 1,
      maxQueueSize: 2048,
      scheduleDelayMs: 5000,
    });
  });

  it('takes the service name from OTEL_SERVICE_NAME, else from the resource attributes', () => {
    const base = {
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
      OTEL_RESOURCE_ATTRIBUTES: 'service.name=datastore,k8s.pod.name=p%201',
    };
    expect(settings(base)).toMatchObject({
      serviceName: 'datastore',
      resourceAttributes: { 'service.name': 'datastore', 'k8s.pod.name': 'p 1' },
    });
    expect(settings({ ...base, OTEL_SERVICE_NAME: 'sidecar-a' })?.serviceName).toBe('sidecar-a');
  });

  it('merges the headers (the traces ones win) and never shows their values when logged', () => {
    const config = loadConfig({
      ...MINIMAL_ENV,
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
      OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20collector-secret,x-tenant=a',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-tenant=b',
    });
    expect(tracingSettings(config)!.headers.values).toEqual({ authorization: 'Bearer collector-secret', 'x-tenant': 'b' });
    // The start-up line logs the configuration as JSON.
    const logged = JSON.stringify(config);
    expect(logged).not.toContain('collector-secret');
    expect(logged).toContain('"otelHeaders":{"authorization":"***","x-tenant":"***"}');
  });

  it('takes the timeout and the ratio', () => {
    expect(
      settings({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_TIMEOUT: '2000',
        OTEL_TRACES_SAMPLER: 'TraceIdRatio',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
      }),
    ).toMatchObject({ timeoutMs: 2000, sampler: 'traceidratio', samplerRatio: 0.25 });
    expect(
      settings({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
        OTEL_EXPORTER_OTLP_TIMEOUT: '2000',
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '500',
      })?.timeoutMs,
    ).toBe(500);
  });

  it.each([
    [
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' },
      'OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318": expected an http:// or https:// URL',
    ],
    [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, 'OTEL_EXPORTER_OTLP_PROTOCOL="grpc": expected http/protobuf'],
    [{ OTEL_TRACES_SAMPLER: 'jaeger_remote' }, 'OTEL_TRACES_SAMPLER="jaeger_remote": expected one of parentbased_always_on'],
    [{ OTEL_TRACES_SAMPLER_ARG: '1.5' }, 'OTEL_TRACES_SAMPLER_ARG="1.5": expected a number from 0 to 1'],
    [{ OTEL_BSP_MAX_QUEUE_SIZE: '0' }, 'OTEL_BSP_MAX_QUEUE_SIZE="0": expected a whole number from 1 to 1000000'],
    [{ OTEL_TRACES_EXPORTER: 'zipkin' }, 'OTEL_TRACES_EXPORTER="zipkin": expected otlp or none'],
    [{ OTEL_SDK_DISABLED: 'yes' }, 'OTEL_SDK_DISABLED="yes": expected true or false'],
    [{ OTEL_RESOURCE_ATTRIBUTES: 'novalue' }, 'OTEL_RESOURCE_ATTRIBUTES="novalue": expected key=value pairs'],
  ])('%j is refused, naming the variable and what is expected', (env, message) => {
    expect(problems(env).join('\n')).toContain(message);
  });

  it('never shows a value that may hold credentials', () => {
    const told = problems({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://user:hunter2@collector:4318',
      OTEL_EXPORTER_OTLP_HEADERS: 'authorization:hunter3',
    }).join('\n');
    expect(told).toContain('OTEL_EXPORTER_OTLP_ENDPOINT: expected a URL without credentials');
    expect(told).toContain('OTEL_EXPORTER_OTLP_HEADERS: expected name=value pairs');
    expect(told).not.toMatch(/hunter/);
  });
});
