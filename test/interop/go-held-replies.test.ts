import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { runGoClient, useGo } from '../helpers/go.js';

// The Go clients (go-sdk v1.8.0, mcp-go v1.2.1, the library Coder's client uses) dispatch the
// unfinished last event of a stream when it ends; the TypeScript SDK does not. A filtered list in
// such an event once passed the sidecar as raw bytes, unread: here an upstream answers tools/list
// that way, and the clients are run directly (they read drop_table) and through the sidecar with a
// policy that hides drop_table (they never see it). Without a policy a stream passes as it came:
// the audit then reads its unfinished last event as mcp-go does.
const go = useGo();

const POLICY = `rules:
  - name: read-only-tools
    effect: allow
    when: mcp.method == "tools/call" && mcp.tool == "query"
`;

describe.skipIf(!go).each(['mcpgo', 'gosdk'] as const)('a held reply to the %s client', (kind) => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let plain: RunningSidecar;
  let log: CapturedLog;
  let token: string;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    token = await issuer.mint();
    upstream = await startUpstream();
    upstream.handle((req, res, body) => {
      if (req.method !== 'POST') return void res.writeHead(405).end();
      const message = JSON.parse(body) as { id?: number; method: string };
      if (message.id === undefined) return void res.writeHead(202).end();
      if (message.method === 'initialize') {
        const result = { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'crafted', version: '1' } };
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'crafted-session' });
        return void res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
      }
      // The answer's event never ends: no blank line before the stream does (rows_eof: not even a line end).
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (message.method === 'tools/call') {
        const { name } = (message as unknown as { params: { name: string } }).params;
        const result = { content: [{ type: 'text', text: `rows of ${name}` }] };
        return void res.end(`data: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result })}${name === 'rows_eof' ? '' : '\n'}`);
      }
      const tools = ['query', 'drop_table'].map((name) => ({ name, inputSchema: { type: 'object' } }));
      res.end(`data: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { tools } })}\n`);
    });
    const dir = mkdtempSync(join(tmpdir(), 'held-replies-'));
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    sidecar = await startSidecar(testEnv(issuer, upstream, { POLICY_FILE: join(dir, 'policy.yaml') }));
    log = captureLog();
    plain = await startSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'info' }), { logger: log.logger });
  });
  afterAll(async () => {
    await plain?.close();
    await sidecar?.close();
    await upstream?.close();
    await issuer?.close();
  });

  it('reads the unfinished last event directly, and never gets it through the sidecar', async () => {
    const direct = await runGoClient(kind, `${upstream.url}/mcp`, undefined, { MCP_STEPS: 'list' });
    expect(direct.result?.tools, direct.stderr).toContain('drop_table');
    const through = await runGoClient(kind, `${sidecar.url}/mcp`, token, { MCP_STEPS: 'list' });
    expect(through.stdout + through.stderr).not.toContain('drop_table');
    expect(through.result?.steps?.list?.error, through.stdout + through.stderr).toBeDefined();
  }, 30_000);

  // The Go clients read an event whose lines ended without the blank line after them; a last
  // line without its line end only go-sdk reads. The audit follows mcp-go, Coder's library.
  it.each([
    ['rows_lf', true],
    ['rows_eof', kind === 'gosdk'],
  ] as const)(
    'without a policy, a reply whose last event is unfinished (%s) passes as it came; the audit reads it as mcp-go does',
    async (tool, clientReads) => {
      const step = `call:${tool}`;
      const direct = await runGoClient(kind, `${upstream.url}/mcp`, undefined, { MCP_STEPS: step });
      const read = direct.result?.steps?.[step];
      expect(read, direct.stdout + direct.stderr).toEqual(clientReads ? { text: `rows of ${tool}` } : { error: expect.any(String) });
      const through = await runGoClient(kind, `${plain.url}/mcp`, token, { MCP_STEPS: step });
      expect(through.result?.steps?.[step], through.stdout + through.stderr).toEqual(read);
      const [line] = await log.waitForAudit((l) => l.tool === tool);
      expect(line).toMatchObject({ method: 'tools/call', outcome: tool === 'rows_lf' ? 'result' : 'upstream_error' });
    },
    30_000,
  );
});
