import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { Redis } from 'ioredis';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { findTool } from '../helpers/tools.js';

// Every message read from a body ends exactly once: one audit line, one count in
// mcp_auth_mcp_messages_total, and its in-flight slot given back (in Redis, and the id free
// again in its session), whatever the upstream answers or fails to answer, whatever the client
// does, and whatever Redis does meanwhile. A property over generated batches, replies,
// disconnects, upstream failures and Redis stalls, against a scripted upstream and a real Redis.

const redisServer = findTool('redis-server');

type Reply =
  | 'json' // every request answered in one JSON body
  | 'sse' // every request answered, one event each
  | 'sse-some' // some answered, then the stream ends
  | 'sse-hang' // some answered, then the stream stays open until the client goes
  | 'reset-mid' // headers and one event, then the connection is cut
  | 'reset-before' // the connection is cut before any header
  | 'status-500' // an HTTP error with a JSON body
  | 'error-null-id' // one JSON-RPC error without id (answers every request)
  | 'stray-ids' // answers for ids nobody asked, and one real id twice
  | 'silent'; // no answer at all, until the client goes

interface Message {
  kind: 'call' | 'list' | 'notification';
  id: number;
  tool: 'a' | 'b';
}

interface Scenario {
  messages: Message[];
  reply: Reply;
  /** Of the requests, how many `sse-some`/`sse-hang` answer. */
  answered: number;
  /** The client goes after this many ms (undefined: it waits for the end). */
  clientGoesAfterMs: number | undefined;
  /** Redis is frozen this long (ms) from just before the request (0: not at all). */
  redisStallMs: number;
}

describe.skipIf(!redisServer)('every message ends once', () => {
  let issuer: TestIssuer;
  let redis: TestRedis;
  let redisClient: Redis;
  let upstream: Server;
  let sidecar: RunningSidecar;
  let log: CapturedLog;
  let token: string;
  let next: Scenario | undefined;

  function result(message: { id: number; method: string }): unknown {
    return {
      jsonrpc: '2.0',
      id: message.id,
      result: message.method === 'tools/list' ? { tools: [{ name: 'a', inputSchema: { type: 'object' } }] } : { content: [] },
    };
  }

  function serve(req: IncomingMessage, res: ServerResponse, body: string): void {
    const scenario = next!;
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      value = [];
    }
    const requests = (Array.isArray(value) ? value : [value]).filter(
      (m): m is { id: number; method: string } => typeof m === 'object' && m !== null && 'id' in m,
    );
    const event = (m: unknown) => `event: message\ndata: ${JSON.stringify(m)}\n\n`;
    const sse = () => res.writeHead(200, { 'content-type': 'text/event-stream' });
    switch (scenario.reply) {
      case 'json': {
        if (requests.length === 0) return void res.writeHead(202).end();
        const answers = requests.map(result);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(Array.isArray(value) ? answers : answers[0]));
        return;
      }
      case 'sse':
        sse();
        res.end(requests.map((m) => event(result(m))).join(''));
        return;
      case 'sse-some':
      case 'sse-hang':
        sse();
        res.write(
          requests
            .slice(0, scenario.answered)
            .map((m) => event(result(m)))
            .join('') || ': nothing\n\n',
        );
        if (scenario.reply === 'sse-some') res.end();
        return;
      case 'reset-mid':
        sse();
        res.write(requests.length > 0 ? event(result(requests[0]!)) : ': one\n\n');
        setTimeout(() => req.socket.destroy(), 20);
        return;
      case 'reset-before':
        req.socket.destroy();
        return;
      case 'status-500':
        res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"boom"}');
        return;
      case 'error-null-id':
        res
          .writeHead(400, { 'content-type': 'application/json' })
          .end('{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse"}}');
        return;
      case 'stray-ids': {
        sse();
        const stray = [{ jsonrpc: '2.0', id: 999, result: {} }, ...requests.map(result), ...requests.slice(0, 1).map(result)];
        res.end(stray.map(event).join(''));
        return;
      }
      case 'silent':
        // Held until the sidecar lets go (the client went).
        return;
    }
  }

  beforeAll(async () => {
    redis = await startRedis();
    redisClient = new Redis(redis.url);
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => serve(req, res, Buffer.concat(chunks).toString('utf8')));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const dir = mkdtempSync(join(tmpdir(), 'end-once-'));
    // A policy that rewrites tools/list (held replies) and allows everything else.
    writeFileSync(join(dir, 'policy.yaml'), 'rules:\n  - name: everyone\n    effect: allow\n    when: "true"\n');
    log = captureLog();
    sidecar = await startSidecar(
      testEnv(
        issuer,
        { url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` },
        {
          LOG_LEVEL: 'info',
          POLICY_FILE: join(dir, 'policy.yaml'),
          REDIS_URL: redis.url,
          REDIS_TIMEOUT_MS: '150',
          // As many as a generated batch holds: one slot left taken refuses the probe below.
          RATE_LIMIT_CONCURRENT_TOOL_CALLS: '4',
          RATE_LIMIT_TOOL_PER_MINUTE: '100000',
          RATE_LIMIT_IN_FLIGHT_EXPIRY_SECONDS: '3',
          UPSTREAM_TIMEOUT_SECONDS: '5',
        },
      ),
      { logger: log.logger },
    );
    token = await issuer.mint({ sub: 'alice-sub', preferred_username: 'alice' });
  });
  afterAll(async () => {
    redis?.resume();
    redisClient?.disconnect();
    await sidecar?.close();
    upstream?.closeAllConnections();
    await new Promise((resolve) => upstream?.close(resolve));
    await issuer?.close();
    await redis?.close();
  });

  const message = fc.record({
    kind: fc.constantFrom<Message['kind']>('call', 'call', 'list', 'notification'),
    tool: fc.constantFrom<Message['tool']>('a', 'b'),
  });
  const scenario: fc.Arbitrary<Scenario> = fc
    .record({
      messages: fc.array(message, { minLength: 1, maxLength: 4 }),
      reply: fc.constantFrom<Reply>(
        'json',
        'sse',
        'sse-some',
        'sse-hang',
        'reset-mid',
        'reset-before',
        'status-500',
        'error-null-id',
        'stray-ids',
        'silent',
      ),
      answered: fc.integer({ min: 0, max: 3 }),
      clientGoes: fc.option(fc.integer({ min: 0, max: 120 }), { freq: 3 }),
      redisStallMs: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, fc.integer({ min: 200, max: 600 })),
    })
    .map(({ messages, reply, answered, clientGoes, redisStallMs }) => ({
      // Ids 1..4 again and again in one session: an id left in flight would refuse the next body.
      messages: messages.map((m, i) => ({ ...m, id: i + 1 })),
      reply,
      answered,
      // A stream that never ends needs the client to go.
      clientGoesAfterMs: clientGoes ?? (reply === 'sse-hang' || reply === 'silent' ? 80 : undefined),
      redisStallMs,
    }));

  const body = (s: Scenario) =>
    JSON.stringify(
      s.messages.map((m) =>
        m.kind === 'call'
          ? { jsonrpc: '2.0', id: m.id, method: 'tools/call', params: { name: m.tool, arguments: { n: m.id } } }
          : m.kind === 'list'
            ? { jsonrpc: '2.0', id: m.id, method: 'tools/list' }
            : { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: m.id, progress: 1 } },
      ),
    );

  const FOUR_CALLS = JSON.stringify(
    [1, 2, 3, 4].map((id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'a', arguments: {} } })),
  );

  /** A body sent in the test's session; resolves with the sidecar's request id once the answer is read. */
  /** A POST of `text`; `onSent` is called once the whole body is handed to the socket. */
  async function post(text: string, signal?: AbortSignal, onSent?: () => void): Promise<string> {
    const bytes = Buffer.from(text);
    const res = await request(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        'content-length': String(bytes.length),
        accept: 'application/json, text/event-stream',
        'mcp-session-id': 'end-once-session',
        // Batches exist before 2025-06-18.
        'mcp-protocol-version': '2025-03-26',
      },
      body: Readable.from(
        (async function* () {
          yield bytes;
          onSent?.();
        })(),
      ),
      signal,
    });
    const reqId = String(res.headers['x-request-id']);
    await res.body.text();
    return reqId;
  }

  async function messagesCounted(): Promise<number> {
    const text = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    let sum = 0;
    for (const match of text.matchAll(/^mcp_auth_mcp_messages_total\{[^}]*\} (\d+)/gm)) sum += Number(match[1]);
    return sum;
  }

  /** Waits (bounded) for a condition; returns whether it held. */
  async function until(condition: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!(await condition())) {
      if (Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    return true;
  }

  it('holds for generated batches, replies, disconnects, upstream failures and Redis stalls', async () => {
    let lines = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        next = s;
        const controller = new AbortController();
        if (s.redisStallMs > 0) redis.pause();
        const stall = s.redisStallMs > 0 ? setTimeout(() => redis.resume(), s.redisStallMs) : undefined;
        // The client leaves that long after its whole body is sent: a body the sidecar never
        // received has no messages to end (on a loaded machine 9 ms may pass before it arrives).
        let leave: NodeJS.Timeout | undefined;
        const sent = () => {
          if (s.clientGoesAfterMs !== undefined) leave = setTimeout(() => controller.abort(), s.clientGoesAfterMs);
        };
        let reqId: string | undefined;
        try {
          reqId = await post(body(s), controller.signal, sent);
        } catch {
          // The client went, or the sidecar cut the response: the sidecar's lines say the rest.
        } finally {
          clearTimeout(leave);
          clearTimeout(stall);
          redis.resume();
        }
        // One line per message, whatever happened; found by the content they share (reqId may be
        // unknown to a client that left before the headers).
        const expected = s.messages.length;
        const mine = () => log.audit().slice(lines);
        const ended = await until(() => mine().length >= expected, 5000);
        expect(ended, `${JSON.stringify(s)}: ${mine().length} of ${expected} lines`).toBe(true);
        // And no more: whatever was still to end has ended (the upstream side is closed by now).
        await until(() => false, 50);
        expect(mine(), JSON.stringify(s)).toHaveLength(expected);
        const ids = mine().map((l) => l.reqId);
        expect(new Set(ids).size, JSON.stringify(s)).toBe(1);
        if (reqId !== undefined) expect(ids[0]).toBe(reqId);
        // No reading refusal: a leaked in-flight id would refuse the next body.
        expect(mine().map((l) => l.outcome)).not.toContain('invalid_request');
        lines += expected;
        expect(await messagesCounted()).toBe(lines);
        // Every slot back: the user can have four calls in flight again, at once (released) or
        // within one lease (3 s) after a stall (lapsed).
        next = { messages: [], reply: 'json', answered: 0, clientGoesAfterMs: undefined, redisStallMs: 0 };
        const free = await until(async () => {
          const probe = await post(FOUR_CALLS);
          await until(() => log.audit().filter((l) => l.reqId === probe).length === 4, 2000);
          const outcomes = log
            .audit()
            .filter((l) => l.reqId === probe)
            .map((l) => l.outcome);
          lines += outcomes.length;
          return outcomes.every((outcome) => outcome === 'result');
        }, 4500);
        expect(free, `${JSON.stringify(s)}: a slot stayed taken`).toBe(true);
        expect(await until(async () => (await redisClient.zcard('mcp-auth:inflight:s.alice-sub')) === 0, 2000)).toBe(true);
        expect(await messagesCounted()).toBe(lines);
      }),
      { numRuns: 40, endOnFailure: true },
    );
  }, 300_000);
});
