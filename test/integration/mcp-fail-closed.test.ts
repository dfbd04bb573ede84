import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RPC_CODES } from '../../src/lib/errors.js';
import type { ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import { request } from 'undici';
import fc from 'fast-check';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import type { Guard } from '../../src/mcp/guard.js';

// A reply a guard must rewrite (list filtering) never reaches the client unread: a body that
// cannot be read (compressed, too large, not JSON) or a rewrite that fails becomes a JSON-RPC
// error for the request, and the upstream's own answer to that id is dropped.
describe('replies a guard must rewrite fail closed', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let log: CapturedLog;
  let token: string;
  let failRewrite = false;
  const SECRET = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret-tool"}]}}`;

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    token = await issuer.mint();
    log = captureLog();
    failRewrite = false;
    const rewriter: Guard = {
      judge: () => ({ effect: 'allow' }),
      rewrites: (m) => m === 'tools/list',
      rewriteResult: () => {
        if (failRewrite) throw new Error('cannot filter');
        return { tools: [] };
      },
    };
    sidecar = await startSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'info', MCP_MAX_BODY_BYTES: '4096' }), {
      logger: log.logger,
      guards: [rewriter],
    });
  });
  afterEach(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  const list = async () => {
    const res = await request(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  };
  const reply = (status: number, headers: Record<string, string>, body: string | Buffer) =>
    upstream.handle((_req, res: ServerResponse) => res.writeHead(status, headers).end(body));
  const unfiltered = {
    jsonrpc: '2.0',
    id: 1,
    error: { code: RPC_CODES.responseUnchecked, message: 'the response could not be read to apply the tool policy' },
  };

  it('a compressed JSON reply: the client gets the error as plain JSON', async () => {
    reply(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }, gzipSync(SECRET));
    const { headers, text } = await list();
    expect(JSON.parse(text)).toEqual(unfiltered);
    expect(headers['content-encoding']).toBeUndefined();
    expect(headers['content-type']).toBe('application/json');
    expect((await log.waitForAudit((l) => l.rpcId === 1))[0]).toMatchObject({
      outcome: 'upstream_error',
      rpcErrorCode: RPC_CODES.responseUnchecked,
      bytesOut: Buffer.byteLength(text),
    });
  });

  it('a JSON reply larger than MCP_MAX_BODY_BYTES, and one that is not JSON', async () => {
    reply(200, { 'content-type': 'application/json' }, SECRET.replace('secret-tool', 'secret-tool'.repeat(1000)));
    expect(JSON.parse((await list()).text)).toEqual(unfiltered);
    reply(200, { 'content-type': 'application/json' }, `${SECRET}}`);
    expect(JSON.parse((await list()).text)).toEqual(unfiltered);
  });

  it("an HTTP error's body that is not JSON passes as it is, the request's outcome upstream_error", async () => {
    reply(500, { 'content-type': 'application/json' }, 'upstream broke');
    const { status, text } = await list();
    expect(status).toBe(500);
    expect(text).toBe('upstream broke');
    expect((await log.waitForAudit((l) => l.rpcId === 1))[0]).toMatchObject({ outcome: 'upstream_error' });
  });

  it('a rewrite that fails: the error instead of the result', async () => {
    failRewrite = true;
    reply(200, { 'content-type': 'application/json' }, SECRET);
    expect(JSON.parse((await list()).text)).toEqual(unfiltered);
  });

  it('an event too large to read becomes an error event, and the same id answered again is dropped', async () => {
    const huge = `data: ${SECRET.replace('secret-tool', 'secret-tool'.repeat(1000))}\n\n`;
    reply(200, { 'content-type': 'text/event-stream' }, `${huge}id: e2\ndata: ${SECRET}\n\n: still here\n\n`);
    const { text } = await list();
    expect(text).not.toContain('secret-tool');
    expect(text).toBe(`event: message\ndata: ${JSON.stringify(unfiltered)}\n\n: still here\n\n`);
  });
  // What the sidecar judged is what the client gets: each form below once let a reply pass that
  // the guard never read, or read otherwise than the client would.
  describe('a held reply passes only as it was read', () => {
    const sse = (body: string | Buffer) => reply(200, { 'content-type': 'text/event-stream' }, body);
    const filtered = `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`;

    it('an event whose data is not JSON is not written; the held request gets the error', async () => {
      sse(`data: ${SECRET} trailing\n\n`);
      const { text } = await list();
      expect(text).not.toContain('secret-tool');
      expect(text).toBe(`data: ${JSON.stringify(unfiltered)}\n\n`);
      expect((await log.waitForAudit((l) => l.rpcId === 1))[0]).toMatchObject({ outcome: 'upstream_error' });
    });

    it('an event of another type passes as read, one that clients take for a message does not', async () => {
      sse(`event: endpoint\ndata: /messages?sessionId=1\n\nid: p1\ndata:\n\ndata: ${SECRET}\n\n`);
      expect((await list()).text).toBe(`event: endpoint\ndata: /messages?sessionId=1\n\nid: p1\ndata: \n\ndata: ${filtered}\n\n`);
      // Go clients trim the type: "message " is a message to them.
      sse(`event: message \ndata: ${SECRET} trailing\n\n`);
      expect((await list()).text).toBe(`event: message \ndata: ${JSON.stringify(unfiltered)}\n\n`);
    });

    it('a second answer to an id already answered is dropped, in a stream and in a JSON batch', async () => {
      sse(`data: ${SECRET}\n\ndata: ${SECRET}\n\n`);
      expect((await list()).text).toBe(`data: ${filtered}\n\n`);
      reply(200, { 'content-type': 'application/json' }, `[${SECRET},${SECRET}]`);
      expect(JSON.parse((await list()).text)).toEqual([JSON.parse(filtered)]);
    });

    it('an answer to an id the sidecar answered itself is dropped alone, the rest of its batch kept', async () => {
      const other = `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"kept"}}`;
      sse(`data: ${SECRET.replace('secret-tool', 'secret-tool'.repeat(1000))}\n\ndata: [${SECRET},${other}]\n\n`);
      const { text } = await list();
      expect(text).not.toContain('secret-tool');
      expect(text).toContain('"kept"');
    });

    it('an unreadable reply with a 2xx status other than 200 is replaced by the error', async () => {
      reply(201, { 'content-type': 'application/json', 'content-encoding': 'gzip' }, gzipSync(SECRET));
      expect(JSON.parse((await list()).text)).toEqual(unfiltered);
      reply(203, { 'content-type': 'text/plain' }, SECRET);
      expect(JSON.parse((await list()).text)).toEqual(unfiltered);
      // A status that carries no body: nothing to read, nothing passes, the request still ends.
      reply(204, {}, '');
      const noContent = await list();
      expect(noContent.text).toBe('');
      expect(noContent.status).toBe(204);
    });

    it('the unfinished last event of a stream is not written', async () => {
      sse(`: open\n\ndata: ${SECRET}\n`);
      const { text } = await list();
      expect(text).toBe(': open\n\n');
      expect((await log.waitForAudit((l) => l.rpcId === 1))[0]).toMatchObject({ outcome: 'upstream_error' });
    });

    it('a byte order mark before the first event: read as clients read it (stripped), and filtered', async () => {
      sse(`\uFEFFdata: ${SECRET}\n\n`);
      const { text } = await list();
      expect(text).not.toContain('secret-tool');
      expect(text).toBe(`data: ${filtered}\n\n`);
    });

    it('an event is written as read: decoded text, its own fields kept, unknown lines dropped', async () => {
      const invalid = Buffer.concat([
        Buffer.from(
          `id: e1\r\nevent: message\r\nretry: 10\r\nfoo: bar\r\n: note\r\ndata: {"jsonrpc":"2.0","id":1,"result":{"tools":[],"x":"`,
        ),
        Buffer.from([0xff, 0xfe]),
        Buffer.from(`"}}\r\n\r\n`),
      ]);
      sse(invalid);
      const res = await request(`${sidecar.url}/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
      const bytes = Buffer.from(await res.body.arrayBuffer());
      expect(bytes.includes(0xff)).toBe(false);
      expect(bytes.toString('utf8')).toBe(
        `id: e1\nevent: message\nretry: 10\n: note\ndata: {"jsonrpc":"2.0","id":1,"result":{"tools":[]}}\n\n`,
      );
    });

    it('generated streams: nothing unfiltered passes, and what passes reads alike under every client line rule', async () => {
      // Pieces of an upstream's stream: the reply to filter, forms a client could read apart, and
      // harmless events; joined with any line ending, maybe behind a byte order mark, maybe with
      // the reply in an event that never ends.
      const piece = fc.constantFrom(
        (eol: string) => `data: ${SECRET}${eol}${eol}`,
        (eol: string) => `event: message${eol}data: ${SECRET}${eol}${eol}`,
        (eol: string) => `data: ${SECRET.slice(0, 30)}${eol}data: ${SECRET.slice(30)}${eol}${eol}`,
        (eol: string) => `data: ${SECRET} x${eol}${eol}`,
        (eol: string) => `event:  message ${eol}data: {${eol}${eol}`,
        (eol: string) => `: keep-alive${eol}${eol}`,
        (eol: string) => `id: p1${eol}data:${eol}${eol}`,
        (eol: string) => `event: endpoint${eol}data: /messages${eol}${eol}`,
        (eol: string) => `foo: bar${eol}data: ${SECRET}${eol}${eol}`,
        (eol: string) => `retry: 5${eol}id: e7${eol}data: {"jsonrpc":"2.0","method":"notifications/message","params":{}}${eol}${eol}`,
      );
      const stream = fc.record({
        bom: fc.boolean(),
        eol: fc.constantFrom('\n', '\r\n', '\r'),
        pieces: fc.array(piece, { minLength: 1, maxLength: 5 }),
        unfinished: fc.boolean(),
      });
      const canonical = /^(?:(?::[^\r\n]*|(?:id|event|retry)(?::[^\r\n]*)?)\n)*(?:data: [^\r\n]*\n)*\n$/;
      await fc.assert(
        fc.asyncProperty(stream, async ({ bom, eol, pieces, unfinished }) => {
          const body = `${bom ? '\uFEFF' : ''}${pieces.map((p) => p(eol)).join('')}${unfinished ? `data: ${SECRET}${eol}` : ''}`;
          sse(body);
          const { text } = await list();
          expect(text, JSON.stringify(body)).not.toContain('secret-tool');
          // Each event written: LF line ends only, known fields, data last (Go splits lines on LF only).
          for (const event of text.split(/(?<=\n\n)/)) expect(event, JSON.stringify(text)).toMatch(canonical);
        }),
        { numRuns: 40 },
      );
    }, 120_000);

    it('a held JSON reply is audited with the bytes the client got', async () => {
      reply(200, { 'content-type': 'application/json' }, SECRET);
      const { text } = await list();
      expect((await log.waitForAudit((l) => l.rpcId === 1))[0]).toMatchObject({ outcome: 'result', bytesOut: Buffer.byteLength(text) });
      expect(Buffer.byteLength(text)).toBeGreaterThan(0);
    });
  });
});
