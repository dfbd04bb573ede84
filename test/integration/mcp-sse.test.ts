import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ServerResponse } from 'node:http';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import type { Guard } from '../../src/mcp/guard.js';

// Event-stream responses are read as they pass: events reach the client as they arrive, however
// the upstream cuts them into chunks, and an event larger than the bound passes unread.
describe('MCP responses as text/event-stream', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar | undefined;
  let log: CapturedLog;
  let token: string;

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    token = await issuer.mint();
  });
  afterEach(async () => {
    await sidecar?.close();
    await upstream.close();
    await issuer.close();
  });

  const start = async (guards: Guard[] = []) => {
    log = captureLog();
    sidecar = await startSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'info', MCP_MAX_BODY_BYTES: '4096' }), {
      logger: log.logger,
      guards,
    });
  };
  const call = (id: number, method = 'tools/call') =>
    request(`${sidecar!.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id, method, params: { name: 'q', arguments: {} } }),
    });
  const sse = (res: ServerResponse) => res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });

  it('finds the outcome however the stream is cut: byte by byte, CRLF and CR line ends, several data lines', async () => {
    await start();
    const result = (id: number) => `{"jsonrpc":"2.0","id":${id},"result":{"isError":true,"content":[]}}`;
    const streams = [
      `event: message\nid: 1\ndata: ${result(1)}\n\n`,
      `event: message\r\ndata: ${result(2)}\r\n\r\n`,
      `: comment\rdata: ${result(3)}\r\r`,
      `data: {"jsonrpc":"2.0",\ndata: "id":4,"result":{"isError":true}}\n\n`,
    ];
    upstream.handle((req, res, body) => {
      const id = (JSON.parse(body) as { id: number }).id;
      const text = Buffer.from(`data: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}\n\n${streams[id - 1]}`);
      sse(res);
      // One byte a write, each in its own packet: every cut a chunk can have.
      let i = 0;
      const next = () => {
        if (i === text.length) return void res.end();
        res.write(text.subarray(i, ++i), () => setImmediate(next));
      };
      next();
    });
    for (let id = 1; id <= streams.length; id++) {
      const res = await call(id);
      expect(await res.body.text()).toContain(`"id":${id}`);
      const [line] = await log.waitForAudit((l) => l.rpcId === id);
      expect(line, `stream ${id}`).toMatchObject({ outcome: 'tool_error' });
    }
  });

  it('writes each event to the client as it arrives, before the upstream has sent the next', async () => {
    await start();
    let sendResult!: () => void;
    upstream.handle((_req, res) => {
      sse(res);
      res.write('data: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}\n\n');
      sendResult = () => res.end('data: {"jsonrpc":"2.0","id":1,"result":{}}\n\n');
    });
    const res = await call(1);
    const reader = res.body[Symbol.asyncIterator]();
    const first = String((await reader.next()).value);
    expect(first).toContain('notifications/progress');
    sendResult();
    let rest = '';
    for (let next = await reader.next(); !next.done; next = await reader.next()) rest += String(next.value);
    expect(rest).toContain('"result"');
    expect((await log.waitForAudit((l) => l.rpcId === 1))[0]).toMatchObject({ outcome: 'result' });
  });

  it('passes an event larger than MCP_MAX_BODY_BYTES unread and intact, its outcome unknown, and reads the events after it', async () => {
    await start();
    const huge = `data: {"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"${'x'.repeat(20_000)}"}]}}\n\n`;
    upstream.handle((req, res, body) => {
      const id = (JSON.parse(body) as { id: number }).id;
      sse(res);
      if (id === 1) res.end(huge);
      else res.end(`${huge.replace('"id":1', '"id":99')}data: {"jsonrpc":"2.0","id":2,"result":{}}\n\n`);
    });
    const res = await call(1);
    expect(await res.body.text()).toBe(huge);
    expect((await log.waitForAudit((l) => l.rpcId === 1))[0]).toMatchObject({ outcome: 'unknown' });
    await (await call(2)).body.text();
    expect((await log.waitForAudit((l) => l.rpcId === 2))[0]).toMatchObject({ outcome: 'result' });
  });

  it('a response a guard must rewrite that is too large to read is replaced by a JSON-RPC error (fail closed)', async () => {
    const rewriter: Guard = {
      judge: () => ({ effect: 'allow' }),
      rewrites: (m) => m === 'tools/list',
      rewriteResult: () => ({ tools: [] }),
    };
    await start([rewriter]);
    const huge = `data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret-tool","description":"${'x'.repeat(20_000)}"}]}}\n\n`;
    upstream.handle((_req, res) => {
      sse(res);
      res.end(huge);
    });
    const res = await call(1, 'tools/list');
    const text = await res.body.text();
    expect(text).not.toContain('secret-tool');
    expect(text).toContain('"error"');
    expect(text).toContain('"id":1');
  });

  it('holds only the event carrying the response to rewrite: the progress before it passes as it is', async () => {
    const rewriter: Guard = {
      judge: () => ({ effect: 'allow' }),
      rewrites: (m) => m === 'tools/list',
      rewriteResult: () => ({ tools: [{ name: 'visible' }] }),
    };
    await start([rewriter]);
    upstream.handle((_req, res) => {
      sse(res);
      res.write('id: e1\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}\n\n');
      res.end('id: e2\ndata: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"hidden"}]}}\n\n');
    });
    const text = await (await call(1, 'tools/list')).body.text();
    expect(text).toBe(
      'id: e1\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}\n\n' +
        'id: e2\ndata: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"visible"}]}}\n\n',
    );
  });
});
