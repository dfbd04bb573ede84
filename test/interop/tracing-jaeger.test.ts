import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { tracingEnv, useJaeger, type StoredSpan } from '../helpers/jaeger.js';

// The sidecar's spans as a trace backend stores them (Jaeger all-in-one, read back through its
// query API): under the client's traceparent, with the HTTP semantic conventions' attributes, a
// rejection's reason, and the upstream receiving the sidecar's span as its parent.

const jaeger = useJaeger();

const hex = (bytes: number) => randomBytes(bytes).toString('hex');
/** A client's trace context: its trace id, the id of its span, sampled. */
const clientContext = () => {
  const traceId = hex(16);
  const spanId = hex(8);
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
};
const byName = (spans: StoredSpan[], name: string) => spans.find((span) => span.name === name);

describe.skipIf(!jaeger)('traces in Jaeger', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let log: CapturedLog;
  let token: string;
  const service = `sidecar-${hex(4)}`;

  beforeAll(async () => {
    await jaeger!.ready();
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    log = captureLog();
    sidecar = await startSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'info', ...tracingEnv(jaeger!, service) }), { logger: log.logger });
    token = await issuer.mint();
  });
  afterAll(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  it('an accepted request: its span under the client’s, the upstream’s parent, the request line’s ids', async () => {
    const client = clientContext();
    const response = await fetch(`${sidecar.url}/mcp?token=not-logged`, {
      headers: { authorization: `Bearer ${token}`, traceparent: client.traceparent, 'user-agent': 'coder/2.24' },
    });
    expect(response.status).toBe(200);
    const spans = await jaeger!.trace(client.traceId, (s) => s.length >= 3);
    const server = byName(spans, 'GET /*')!;
    expect(server).toMatchObject({
      kind: 'server',
      service,
      parentId: client.spanId,
      attributes: {
        'http.request.method': 'GET',
        'url.scheme': 'http',
        'url.path': '/mcp',
        'http.route': '/*',
        'http.response.status_code': 200,
        'user_agent.original': 'coder/2.24',
        'user.name': 'alice',
        'client.address': '127.0.0.1',
      },
    });
    expect(server.attributes).not.toHaveProperty('error.type');
    const verification = byName(spans, 'verify token')!;
    expect(verification).toMatchObject({ kind: 'internal', parentId: server.spanId, attributes: { 'mcp_auth.verdict_cache': 'miss' } });
    const call = byName(spans, 'GET')!;
    expect(call).toMatchObject({
      kind: 'client',
      parentId: server.spanId,
      attributes: {
        'http.request.method': 'GET',
        'server.address': '127.0.0.1',
        'server.port': Number(new URL(upstream.url).port),
        'url.full': `${upstream.url}/mcp`,
        'http.response.status_code': 200,
      },
    });
    // The upstream's parent is the sidecar's client span, in the client's trace.
    expect(upstream.seen.at(-1)!.headers.traceparent).toBe(`00-${client.traceId}-${call.spanId}-01`);
    const line = log.lines().find((l) => l.msg === 'request' && l.traceId === client.traceId);
    expect(line).toMatchObject({ spanId: server.spanId, status: 200, decision: 'accept' });
  });

  it('a token the cache already judged: an attribute of the request span, no span of its own', async () => {
    const client = clientContext();
    await (await fetch(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${token}`, traceparent: client.traceparent } })).text();
    const spans = await jaeger!.trace(client.traceId, (s) => s.length >= 2);
    expect(spans.map((s) => s.name).sort()).toEqual(['GET', 'GET /*']);
    expect(byName(spans, 'GET /*')!.attributes['mcp_auth.verdict_cache']).toBe('hit');
  });

  it('a refused token: the reason as error.type, nothing upstream', async () => {
    const client = clientContext();
    const seen = upstream.seen.length;
    const bad = `${token.slice(0, -8)}AAAAAAAA`;
    const response = await fetch(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${bad}`, traceparent: client.traceparent } });
    expect(response.status).toBe(401);
    const spans = await jaeger!.trace(client.traceId, (s) => s.length >= 2);
    const server = byName(spans, 'GET /*')!;
    expect(server).toMatchObject({
      parentId: client.spanId,
      attributes: { 'http.response.status_code': 401, 'error.type': 'invalid_signature' },
    });
    // A 4xx leaves a server span's status unset (the HTTP conventions); the verification failed.
    expect(server.status).toBeUndefined();
    expect(byName(spans, 'verify token')).toMatchObject({
      parentId: server.spanId,
      status: 'ERROR',
      attributes: { 'error.type': 'invalid_signature', 'mcp_auth.verdict_cache': 'miss' },
    });
    expect(spans).toHaveLength(2);
    expect(upstream.seen.length).toBe(seen);
  });

  it('a request without a token and without trace context: a trace of its own', async () => {
    const response = await fetch(`${sidecar.url}/mcp`);
    expect(response.status).toBe(401);
    const line = await (async () => {
      for (let i = 0; i < 100; i++) {
        const found = log.lines().findLast((l) => l.msg === 'request' && l.reason === 'missing_token');
        if (found !== undefined) return found;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error('no request line');
    })();
    const spans = await jaeger!.trace(String(line.traceId), (s) => s.length >= 1);
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({ spanId: line.spanId, parentId: undefined, attributes: { 'error.type': 'missing_token' } });
  });

  it('no token, Authorization header or query string in any span', async () => {
    const traces = await jaeger!.traces(service);
    const text = JSON.stringify(traces);
    expect(traces.length).toBeGreaterThanOrEqual(4);
    expect(text).not.toContain(token.split('.')[2]!);
    expect(text).not.toContain(token.split('.')[1]!);
    expect(text.toLowerCase()).not.toContain('bearer');
    expect(text.toLowerCase()).not.toContain('authorization');
    expect(text).not.toContain('not-logged');
  });
});
