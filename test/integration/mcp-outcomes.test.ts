import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ServerResponse } from 'node:http';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';

// How a request ends when no result comes: the upstream fails or answers an HTTP error
// (upstream_error), or the client cancels it with notifications/cancelled (cancelled).
describe('MCP outcomes without a result', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let log: CapturedLog;
  let token: string;

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    token = await issuer.mint();
    log = captureLog();
    sidecar = await startSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'info' }), { logger: log.logger });
  });
  afterEach(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  const post = (body: unknown, session = 'session-1') =>
    request(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': session,
      },
      body: JSON.stringify(body),
    });

  it('an HTTP error from the upstream, and an upstream that is gone, end as upstream_error', async () => {
    upstream.handle((_req, res) => res.writeHead(500, { 'content-type': 'text/plain' }).end('boom'));
    await (await post({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'q' } })).body.text();
    expect((await log.waitForAudit((l) => l.rpcId === 1))[0]).toMatchObject({ outcome: 'upstream_error' });
    await upstream.close();
    const res = await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'q' } });
    await res.body.text();
    expect(res.statusCode).toBe(502);
    expect((await log.waitForAudit((l) => l.rpcId === 2))[0]).toMatchObject({ outcome: 'upstream_error' });
    upstream = await startUpstream();
  });

  it('notifications/cancelled from the client makes its request of the same session end as cancelled', async () => {
    let held: ServerResponse | undefined;
    let heldArrived!: () => void;
    const arrived = new Promise<void>((resolve) => (heldArrived = resolve));
    upstream.handle((_req, res, body) => {
      const message = JSON.parse(body) as { id?: number };
      if (message.id === undefined) return void res.writeHead(202).end();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': waiting\n\n');
      held = res;
      heldArrived();
    });
    const call = await post({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'slow' } });
    await arrived;
    await (await post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 9, reason: 'user' } })).body.text();
    held!.end();
    await call.body.text();
    expect((await log.waitForAudit((l) => l.rpcId === 9))[0]).toMatchObject({ outcome: 'cancelled', tool: 'slow' });
    expect((await log.waitForAudit((l) => l.method === 'notifications/cancelled'))[0]).toMatchObject({ outcome: 'result' });
  });
});
