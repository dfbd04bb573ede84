// Bodies read for MCP at once share a budget (16 MiB), and the requests waiting for their place
// in it form a line of at most 256: each holds the first read of its socket, so an unbounded line
// is unbounded memory. Past it, a request gets 503 with Retry-After, with a guard or only the
// audit to read it (never forwarded unread). Once the line is gone, the whole budget is free again.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { waitFor } from '../helpers/redis-ha.js';
import { MAX_WAITING_READS } from '../../src/mcp/read-budget.js';

// 8 MiB bodies: two fill the 16 MiB budget.
const BODY_BYTES = 8 * 1024 * 1024;
const POLICY = `rules:
  - name: whoami-only
    effect: allow
    when: mcp.method == "tools/call" && mcp.tool == "whoami"
`;
const CALL = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'whoami', arguments: {} } });

describe('the line of bodies waiting to be read', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let token: string;
  let policyFile: string;
  let sidecar: RunningSidecar | undefined;
  let log: CapturedLog;
  let sockets: Socket[] = [];

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    token = await issuer.mint();
    upstream = await startUpstream();
    const dir = mkdtempSync(join(tmpdir(), 'read-line-'));
    policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, POLICY);
  });
  afterAll(async () => {
    await upstream?.close();
    await issuer?.close();
  });
  afterEach(async () => {
    for (const socket of sockets) socket.destroy();
    sockets = [];
    await sidecar?.close();
    sidecar = undefined;
  });

  const start = async (env: Record<string, string>) => {
    log = captureLog();
    sidecar = await startSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'info', MCP_MAX_BODY_BYTES: String(BODY_BYTES), ...env }), {
      logger: log.logger,
    });
    return sidecar;
  };
  const waiting = async (running: RunningSidecar) =>
    Number(/^mcp_auth_mcp_body_reads_waiting (\d+)/m.exec(await (await fetch(`${running.adminUrl}/metrics`)).text())?.[1]);

  /** Two requests reading their 8 MiB bodies (never sent) and MAX_WAITING_READS more in line behind them. */
  const fillTheLine = async (running: RunningSidecar) => {
    const { hostname, port } = new URL(running.url);
    for (let i = 0; i < 2 + MAX_WAITING_READS; i++) {
      const socket = connect(Number(port), hostname);
      socket.on('error', () => {});
      socket.write(
        `POST /mcp HTTP/1.1\r\nHost: mcp.test\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n` +
          `Accept: application/json, text/event-stream\r\nContent-Length: ${BODY_BYTES}\r\n\r\n{"jsonrpc":"2.0",`,
      );
      sockets.push(socket);
    }
    await waitFor('the line full', 20_000, async () => ((await waiting(running)) === MAX_WAITING_READS ? true : undefined));
  };
  const send = (running: RunningSidecar, body = CALL) =>
    request(`${running.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body,
    });

  it('with a guard: past the line, 503 with Retry-After and the connection closed; the budget is whole again after', async () => {
    const running = await start({ POLICY_FILE: policyFile });
    await fillTheLine(running);
    const seen = upstream.seen.length;
    const res = await send(running);
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.headers.connection).toBe('close');
    expect(await res.body.json()).toMatchObject({
      error: 'temporarily_unavailable',
      error_description: expect.stringContaining('too many request bodies are being read at once'),
    });
    expect(upstream.seen.length).toBe(seen);
    const [line] = await log.waitForAudit((l) => l.outcome === 'limited');
    expect(line).toMatchObject({ method: 'unparsed' });

    // The 2026-07-28 form: a JSON-RPC error.
    const stateless = await request(`${running.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'mcp-protocol-version': '2026-07-28' },
      body: CALL,
    });
    expect(stateless.statusCode).toBe(503);
    expect(await stateless.body.json()).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32011 } });

    // The clients go: nothing waits, and the budget is whole (two 8 MiB bodies fit again).
    for (const socket of sockets) socket.destroy();
    sockets = [];
    await waitFor('the line empty', 10_000, async () => ((await waiting(running)) === 0 ? true : undefined));
    const big = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping', params: { _meta: { pad: 'x'.repeat(BODY_BYTES - 200) } } });
    const [a, b] = await Promise.all([send(running, big), send(running, big)]);
    expect([a.statusCode, b.statusCode]).toEqual([200, 200]);
    await Promise.all([a.body.text(), b.body.text()]);
    expect(await waiting(running)).toBe(0);
  });

  it('without a guard, only the audit: past the line, 503 too, nothing forwarded unread', async () => {
    const running = await start({});
    await fillTheLine(running);
    const seen = upstream.seen.length;
    const res = await send(running);
    expect(res.statusCode).toBe(503);
    await res.body.text();
    expect(upstream.seen.length).toBe(seen);
    const [line] = await log.waitForAudit((l) => l.method === 'unparsed');
    expect(line).toMatchObject({ outcome: 'limited' });
  });
});
