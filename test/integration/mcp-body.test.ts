import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import type { Guard } from '../../src/mcp/guard.js';

// POST bodies are read as JSON-RPC but forwarded byte for byte (Coder may sign them); what
// cannot be read passes unread without a guard, and is refused with one.
describe('MCP request bodies', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let open: RunningSidecar;
  let guarded: RunningSidecar;
  let log: CapturedLog;
  let token: string;
  const judged: string[] = [];
  const allowAll: Guard = { judge: (message) => (judged.push(message.method), { effect: 'allow' }) };

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    upstream.handle((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end('{"jsonrpc":"2.0","id":1,"result":{}}');
    });
    log = captureLog();
    const env = testEnv(issuer, upstream, { LOG_LEVEL: 'info', MCP_MAX_BODY_BYTES: '2048' });
    open = await startSidecar(env, { logger: log.logger });
    guarded = await startSidecar(env, { logger: captureLog().logger, guards: [allowAll] });
    token = await issuer.mint();
  });
  afterAll(async () => {
    await open.close();
    await guarded.close();
    await upstream.close();
    await issuer.close();
  });

  const post = async (target: RunningSidecar, body: string | Buffer, contentType = 'application/json') => {
    const res = await request(`${target.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': contentType, accept: 'application/json, text/event-stream' },
      body,
    });
    return { status: res.statusCode, body: await res.body.text() };
  };

  it('forwards odd spacing, key order and unicode escapes byte for byte, with the Content-Length received', async () => {
    const bodies = [
      ' {\n\t"params" : { "name":"q", "arguments":{"b":1,"a":2} } ,"method":"tools/call","id":1,"jsonrpc":"2.0"}\r\n',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\\u0071\\u0075ery","arguments":{"t":"caf\\u00e9 \u00e9 \\ud83d\\ude00"}}}',
    ];
    for (const body of bodies) {
      const before = upstream.seen.length;
      expect((await post(open, body)).status).toBe(200);
      const seen = upstream.seen[before]!;
      expect(seen.body).toBe(body);
      expect(seen.headers['content-length']).toBe(String(Buffer.byteLength(body)));
    }
  });

  it('audits the SHA-256 of the arguments exactly as sent, spacing and escapes included', async () => {
    const args = '{ "sql" : "select \\"}\\" from t",\n "limit":10, "who":"caf\\u00e9 é" }';
    const body = `{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"query","arguments":${args}}}`;
    expect((await post(open, body)).status).toBe(200);
    const [line] = await log.waitForAudit((l) => l.rpcId === 41);
    expect(line).toMatchObject({ method: 'tools/call', tool: 'query', argumentNames: ['sql', 'limit', 'who'] });
    expect(line!.argumentsSha256).toBe(createHash('sha256').update(args).digest('hex'));
  });

  it('reads application/json case-insensitively with parameters, and passes other types unread', async () => {
    for (const type of ['Application/JSON; charset=utf-8', 'application/json;charset=UTF-8', 'APPLICATION/JSON']) {
      judged.length = 0;
      await post(guarded, '{"jsonrpc":"2.0","id":1,"method":"ping"}', type);
      expect(judged, type).toEqual(['ping']);
    }
    judged.length = 0;
    const before = upstream.seen.length;
    expect((await post(open, 'not json at all', 'text/plain')).status).toBe(200);
    expect(upstream.seen[before]!.body).toBe('not json at all');
    expect(judged).toEqual([]);
  });

  it('without a guard, a body over MCP_MAX_BODY_BYTES and a body that is not JSON are forwarded unchanged and audited as unparsed', async () => {
    const big = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"q","arguments":{"x":"${'y'.repeat(5000)}"}}}`;
    for (const body of [big, '{"jsonrpc":"2.0", oops', '[]']) {
      const before = upstream.seen.length;
      const audited = log.audit().length;
      expect((await post(open, body)).status).toBe(200);
      expect(upstream.seen[before]!.body).toBe(body);
      const line = (await log.waitForAudit(() => true, audited + 1)).at(-1);
      expect(log.audit().length).toBe(audited + 1);
      expect(line).toMatchObject({ method: 'unparsed', outcome: 'result', bytesIn: Buffer.byteLength(body) });
    }
  });

  // Two parsers read a duplicated name differently: even without a guard, the audit line would
  // name a call that is not the one the server runs.
  it('refuses a body two servers could read differently, with or without a guard: a JSON-RPC error, an unparsed line', async () => {
    const before = upstream.seen.length;
    for (const body of [
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{}}',
      '{"jsonrpc":"2.0","id":1,"method":"ping","id":2}',
    ]) {
      const audited = log.audit().length;
      const res = await post(open, body);
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body)).toMatchObject({
        jsonrpc: '2.0',
        id: null,
        error: { code: -32013, message: expect.stringContaining('twice') },
      });
      const line = (await log.waitForAudit(() => true, audited + 1)).at(-1);
      expect(line).toMatchObject({ method: 'unparsed', outcome: 'invalid_request', rpcErrorCode: -32013 });
    }
    expect(upstream.seen.length).toBe(before);
  });

  it('streams a body over the limit sent without Content-Length (chunked), the part read first and the rest after it', async () => {
    const big = `{"jsonrpc":"2.0","id":7,"method":"ping","params":{"x":"${'z'.repeat(9000)}"}}`;
    const before = upstream.seen.length;
    const res = await request(`${open.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: Readable.from(
        (function* () {
          for (let i = 0; i < big.length; i += 1000) yield Buffer.from(big.slice(i, i + 1000));
        })(),
      ),
    });
    await res.body.text();
    expect(res.statusCode).toBe(200);
    expect(upstream.seen[before]!.body).toBe(big);
  });

  it('with a guard, a body it cannot judge never passes: 413 over the limit, 400 not JSON, not JSON-RPC, duplicate keys, another type', async () => {
    const before = upstream.seen.length;
    const cases: [string, string, number, string][] = [
      [`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"${'y'.repeat(5000)}"}}`, 'application/json', 413, 'payload_too_large'],
      ['{"jsonrpc":"2.0", oops', 'application/json', 400, 'invalid_request'],
      ['{"id":1,"method":"ping"}', 'application/json', 400, 'invalid_request'],
      ['[]', 'application/json', 400, 'invalid_request'],
      ['{"jsonrpc":"2.0","id":1,"method":"ping"}', 'text/plain', 400, 'invalid_request'],
    ];
    for (const [body, type, status, error] of cases) {
      const res = await post(guarded, body, type);
      expect(res.status, body.slice(0, 40)).toBe(status);
      expect(JSON.parse(res.body)).toMatchObject({ error });
    }
    const twice = await post(guarded, '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}');
    expect(twice.status).toBe(400);
    expect(JSON.parse(twice.body)).toMatchObject({ error: { code: -32013 } });
    expect(upstream.seen.length).toBe(before);
  });
});
