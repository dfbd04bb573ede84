import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { freePort } from '../helpers/tools.js';

// A collector that is down, slow (it takes the connection and never answers) or refusing (503)
// costs requests nothing: they are answered as without tracing, the spans that could not go out
// are counted, one warning line says so, and shutdown still ends within the grace time.

type Collector = { url: string; close(): Promise<void> };

async function downCollector(): Promise<Collector> {
  return { url: `http://127.0.0.1:${await freePort()}`, close: async () => {} };
}

async function slowCollector(): Promise<Collector> {
  const sockets = new Set<Socket>();
  const server: TcpServer = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.resume(); // reads the request, never answers
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function refusingCollector(): Promise<Collector> {
  const server: HttpServer = createHttpServer((request, response) => {
    request.resume();
    response.writeHead(503, { 'content-type': 'text/plain' }).end('overloaded');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const COLLECTORS = { down: downCollector, slow: slowCollector, refusing: refusingCollector };

async function dropped(sidecar: RunningSidecar): Promise<Record<string, number>> {
  const text = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
  const counts: Record<string, number> = {};
  for (const match of text.matchAll(/^mcp_auth_trace_spans_dropped_total\{reason="(\w+)"\} (\d+)/gm)) counts[match[1]!] = Number(match[2]);
  return counts;
}

/** Spans a run of accepted requests made: request and upstream, and a verification for each cache miss. */
async function spansMade(sidecar: RunningSidecar, requests: number): Promise<number> {
  const text = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
  const misses = Number(/^mcp_auth_verdict_cache_total\{result="miss"\} (\d+)/m.exec(text)![1]);
  return 2 * requests + misses;
}

async function until<T>(read: () => Promise<T>, holds: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (holds(value)) return value;
    if (Date.now() > deadline) throw new Error(`not reached in ${timeoutMs} ms: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.each(Object.keys(COLLECTORS) as (keyof typeof COLLECTORS)[])('a collector that is %s', (kind) => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let collector: Collector;
  let sidecar: RunningSidecar | undefined;
  let log: CapturedLog;

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    collector = await COLLECTORS[kind]();
    log = captureLog();
  });
  afterEach(async () => {
    await sidecar?.close();
    sidecar = undefined;
    await collector.close();
    await upstream.close();
    await issuer.close();
  });

  const start = async (env: Record<string, string>) => {
    sidecar = await startSidecar(
      testEnv(issuer, upstream, {
        LOG_LEVEL: 'info',
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_EXPORTER_OTLP_TIMEOUT: '300',
        OTEL_BSP_SCHEDULE_DELAY: '10',
        SHUTDOWN_GRACE_SECONDS: '2',
        ...env,
      }),
      { logger: log.logger },
    );
    return sidecar;
  };

  it('answers every request as usual, counts the spans that did not go out and warns once', async () => {
    const running = await start({});
    const token = await issuer.mint();
    for (let round = 0; round < 5; round++) {
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => fetch(`${running.url}/mcp`, { headers: { authorization: `Bearer ${token}` } })),
      );
      expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
      await Promise.all(answers.map((a) => a.text()));
    }
    // None exported.
    const made = await spansMade(running, 100);
    const counts = await until(
      () => dropped(running),
      (c) => (c.export_failed ?? 0) >= made,
    );
    expect(counts).toEqual({ export_failed: made, queue_full: 0 });
    const warnings = log.lines().filter((line) => String(line.msg).startsWith('traces: spans dropped'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, reason: 'export_failed' });
    expect(JSON.stringify(warnings[0])).not.toContain(token);
  });
});

describe('a collector that holds the export', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let collector: Collector;
  let sidecar: RunningSidecar | undefined;

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    collector = await slowCollector();
  });
  afterEach(async () => {
    await sidecar?.close();
    await collector.close();
    await upstream.close();
    await issuer.close();
  });

  it('keeps answering while the queue is full, drops the rest counted, and shuts down within the grace time', async () => {
    // The first batch (4 spans) waits 30 s for an answer that never comes: a request that
    // waited on it would time out the test.
    sidecar = await startSidecar(
      testEnv(issuer, upstream, {
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_EXPORTER_OTLP_TIMEOUT: '30000',
        OTEL_BSP_MAX_QUEUE_SIZE: '4',
        OTEL_BSP_SCHEDULE_DELAY: '60000',
        SHUTDOWN_GRACE_SECONDS: '2',
      }),
    );
    const running = sidecar;
    const token = await issuer.mint();
    for (let i = 0; i < 10; i++) {
      const answer = await fetch(`${running.url}/mcp`, { headers: { authorization: `Bearer ${token}` } });
      expect(answer.status).toBe(200);
      await answer.text();
    }
    // 4 in the export that hangs, 4 waiting behind it, the rest dropped.
    const made = await spansMade(running, 10);
    const counts = await until(
      () => dropped(running),
      (c) => (c.queue_full ?? 0) >= made - 8,
    );
    expect(counts).toEqual({ queue_full: made - 8, export_failed: 0 });
    const started = performance.now();
    await running.close();
    sidecar = undefined;
    expect(performance.now() - started).toBeLessThan(2000 + 1000);
  });
});
