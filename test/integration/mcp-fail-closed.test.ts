import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RPC_CODES } from '../../src/lib/errors.js';
import type { ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import { request } from 'undici';
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
});
