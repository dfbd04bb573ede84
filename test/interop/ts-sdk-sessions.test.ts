import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startMcpServer, type McpTestServer } from '../helpers/mcp-server.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { Sessions } from '../../src/mcp/sessions.js';

// What initialize said is remembered per Mcp-Session-Id, bounded, and forgotten on DELETE and
// after the idle time.
describe('MCP sessions', () => {
  it('remembers client and protocol version, forgets the least recently used beyond the bound, and after the idle time', () => {
    let now = 0;
    const sessions = new Sessions(2, 1000, () => now);
    sessions.start('a', 'c/1', '2025-06-18');
    sessions.start('b', 'c/2', '2025-06-18');
    expect(sessions.get('a')).toMatchObject({ client: 'c/1', protocolVersion: '2025-06-18' });
    sessions.start('c', 'c/3', undefined);
    expect(sessions.size).toBe(2);
    expect(sessions.get('b')).toBeUndefined();
    now = 900;
    expect(sessions.get('a')?.client).toBe('c/1');
    now = 1800;
    expect(sessions.get('a')?.client).toBe('c/1');
    expect(sessions.get('c')).toBeUndefined();
    sessions.end('a');
    expect(sessions.get('a')).toBeUndefined();
  });

  it('keeps at most 64 server requests awaiting an answer per session', () => {
    const sessions = new Sessions();
    sessions.start('s', undefined, undefined);
    for (let i = 0; i < 100; i++) sessions.serverRequest('s', `n${i}`, 'sampling/createMessage');
    expect(sessions.answered('s', 'n0')).toBeUndefined();
    expect(sessions.answered('s', 'n99')).toMatchObject({ method: 'sampling/createMessage' });
    expect(sessions.answered('s', 'n99')).toBeUndefined();
    expect(sessions.get('s')!.serverRequests!.size).toBe(63);
  });

  describe('through the sidecar', () => {
    let issuer: TestIssuer;
    let mcp: McpTestServer;
    let sidecar: RunningSidecar;
    let log: CapturedLog;

    beforeEach(async () => {
      issuer = await startIssuer();
      await issuer.addKey();
      mcp = await startMcpServer();
      log = captureLog();
      sidecar = await startSidecar(testEnv(issuer, mcp, { LOG_LEVEL: 'info' }), { logger: log.logger });
    });
    afterEach(async () => {
      await sidecar.close();
      await mcp.close();
      await issuer.close();
    });

    it('forgets a session on DELETE', async () => {
      const token = await issuer.mint();
      const client = new Client({ name: 'deleting-client', version: '3.0' });
      const transport = new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      });
      await client.connect(transport);
      await client.ping();
      const sessionId = transport.sessionId!;
      expect((await log.waitForAudit((l) => l.method === 'ping'))[0]).toMatchObject({ sessionId, client: 'deleting-client/3.0' });
      await transport.terminateSession();
      await client.close();
      const res = await request(`${sidecar.url}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': sessionId,
        },
        body: '{"jsonrpc":"2.0","id":"late","method":"ping"}',
      });
      await res.body.text();
      const [late] = await log.waitForAudit((l) => l.rpcId === 'late');
      expect(late).toMatchObject({ sessionId, outcome: 'rpc_error' });
      expect(late).not.toHaveProperty('client');
    });
  });
});
