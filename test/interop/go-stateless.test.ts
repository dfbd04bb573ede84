import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { runGoClient, startGoServer, useGo, type GoServer } from '../helpers/go.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { RPC_CODES } from '../../src/lib/errors.js';

// MCP 2026-07-28 end to end: the go-sdk v1.8.0 server in its stateless mode behind the sidecar
// (tool policy, rate limits, audit), and the go-sdk v1.8.0 and mcp-go v1.2.1 clients at their
// default protocol (both reach 2026-07-28 by server/discover): a filtered list, calls allowed,
// denied and rate-limited, an input_required round trip answered by elicitation, and a
// subscriptions/listen stream announcing a tool list change, each with its audit line. The same
// clients pinned to 2025-11-25 still pass; and where a client and the server disagree without
// the sidecar, the sidecar changes nothing about it.
const go = useGo();

const POLICY = `rules:
  - name: read-only-tools
    effect: allow
    when: mcp.method == "tools/call" && tool.annotations.readOnlyHint == true
  - name: alpha-docs
    effect: allow
    when: mcp.method == "resources/read" && mcp.resource.startsWith("docs://alpha/")
  - name: nobody-drops-tables
    effect: deny
    when: mcp.method == "tools/call" && mcp.tool == "drop_table"
limits:
  tools:
    query: { perMinute: 1 }
`;

const STEPS = ['list', 'call:region_query', 'call:echo', 'call:drop_table', 'call:query', 'call:query#2', 'ask', 'listen'].join(',');
const ARGS = {
  MCP_ARGS_ECHO: JSON.stringify({ text: 'hi' }),
  MCP_ARGS_QUERY: JSON.stringify({ sql: 'select 1' }),
  MCP_ARGS_REGION_QUERY: JSON.stringify({ region: 'eu-west', sql: 'select 2' }),
};

/**
 * Before the tests of the describe it is called in: an issuer with a key, the go-sdk stateless
 * server, and a sidecar in front of it with POLICY, its log captured; after them, all closed.
 */
function behindSidecar(): { issuer: TestIssuer; sidecar: RunningSidecar; log: CapturedLog } {
  const stack = {} as { issuer: TestIssuer; sidecar: RunningSidecar; log: CapturedLog };
  let server: GoServer | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'go-stateless-'));
  beforeAll(async () => {
    stack.issuer = await startIssuer();
    await stack.issuer.addKey();
    server = await startGoServer(undefined, { stateless: true });
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    stack.log = captureLog();
    stack.sidecar = await startSidecar(testEnv(stack.issuer, { url: server.origin }, { POLICY_FILE: join(dir, 'policy.yaml') }), {
      logger: stack.log.logger,
    });
  });
  afterAll(async () => {
    await stack.sidecar?.close();
    await server?.close();
    await stack.issuer?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return stack;
}

describe.skipIf(!go)('MCP 2026-07-28: the go-sdk stateless server behind the sidecar, the go-sdk and mcp-go clients', () => {
  const stack = behindSidecar();

  const token = (user: string) => stack.issuer.mint({ preferred_username: user, sub: `sub-${user}` });

  it.each([
    ['gosdk', 'gosdk-client/0.1.0'],
    ['mcpgo', 'mcpgo-client/0.1.0'],
  ] as const)(
    'the %s client at its default protocol: discover, list, call, input_required, listen, each audited',
    async (kind, client) => {
      const user = `${kind}-user`;
      const run = await runGoClient(kind, `${stack.sidecar.url}/mcp`, await token(user), {
        MCP_PROTOCOL: kind === 'mcpgo' ? 'default' : '',
        MCP_STEPS: STEPS,
        ...ARGS,
      });
      expect(run.code, run.stderr).toBe(0);
      const { protocol, tools, steps } = run.result!;
      expect(protocol).toBe('2026-07-28');
      // Filtered: drop_table is destructive, the tools add_tool adds carry no annotations.
      expect(tools).toContain('echo');
      expect(tools).not.toContain('drop_table');
      expect(steps!['call:echo']).toEqual({ text: 'hi' });
      expect(steps!['call:region_query']!.text).toContain('rows in eu-west (Mcp-Param-Region: eu-west)');
      expect(steps!['call:drop_table']!.error).toContain('Forbidden: tools/call of "drop_table" is not allowed by the tool policy');
      expect(steps!['call:query']).toEqual({ text: 'rows for: select 1' });
      expect(steps!['call:query#2']!.error).toContain('rate limit exceeded');
      expect(steps!.ask).toEqual({ text: 'Hello, alice!' });
      expect(steps!.listen).toEqual({ text: 'tools list changed' });

      // The subscription's stream ends when the client exits: its second line.
      const lines = await stack.log.waitForAudit(
        (l) => l.user === user && l.method === 'subscriptions/listen' && l.outcome !== 'subscribed',
      );
      const mine = stack.log.audit().filter((l) => l.user === user);
      // Every request names its client and version in _meta (go-sdk's notifications/cancelled, which
      // it sends when it closes the subscription, has no _meta).
      for (const line of mine.filter((l) => l.rpcId !== undefined)) expect(line).toMatchObject({ client, protocolVersion: '2026-07-28' });
      const outcome = (method: string, tool?: string) =>
        mine.filter((l) => l.method === method && (tool === undefined || l.tool === tool)).map((l) => l.outcome);
      expect(outcome('server/discover')).toContain('result');
      expect(outcome('tools/list')).toContain('result');
      expect(outcome('tools/call', 'echo')).toEqual(['result']);
      expect(outcome('tools/call', 'region_query')).toEqual(['result']);
      expect(mine.find((l) => l.tool === 'drop_table')).toMatchObject({
        outcome: 'denied',
        policyRule: 'nobody-drops-tables',
        rpcErrorCode: RPC_CODES.policyDenied,
      });
      expect(outcome('tools/call', 'query')).toEqual(['result', 'limited']);
      // The round trip: the first call ends input_required, naming what it asked for; the retry,
      // carrying inputResponses, is judged and counted as a call of its own.
      const asks = mine.filter((l) => l.tool === 'ask_name');
      expect(asks).toHaveLength(2);
      expect(asks[0]).toMatchObject({ outcome: 'input_required', inputRequests: ['elicitation/create'], policyRule: 'read-only-tools' });
      expect(asks[0]).not.toHaveProperty('inputResponses');
      expect(asks[1]).toMatchObject({ outcome: 'result', inputResponses: true, policyRule: 'read-only-tools' });
      // The subscription: a line when it opened, one when it ended, with the notifications it carried
      // (the acknowledgement and the list change at least).
      expect(outcome('subscriptions/listen')).toEqual(expect.arrayContaining(['subscribed']));
      expect(lines[0]).toMatchObject({ outcome: 'cancelled' });
      expect(lines[0]!.notifications).toBeGreaterThanOrEqual(2);
      const metrics = await (await fetch(`${stack.sidecar.adminUrl}/metrics`)).text();
      expect(metrics).toMatch(/mcp_auth_mcp_subscription_notifications_total\{method="notifications\/tools\/list_changed"\} [1-9]/);
      expect(metrics).toMatch(/mcp_auth_tool_calls_total\{tool="ask_name",outcome="input_required"\} [1-9]/);
    },
    30_000,
  );

  it.each(['gosdk', 'mcpgo'] as const)(
    'the %s client pinned to 2025-11-25 still passes: filtered list, calls allowed and denied',
    async (kind) => {
      const user = `${kind}-2025`;
      const run = await runGoClient(kind, `${stack.sidecar.url}/mcp`, await token(user), {
        MCP_PROTOCOL: '2025-11-25',
        MCP_STEPS: 'list,call:echo,call:drop_table',
        ...ARGS,
      });
      expect(run.code, run.stderr).toBe(0);
      expect(run.result).toMatchObject({ protocol: '2025-11-25', steps: { 'call:echo': { text: 'hi' } } });
      expect(run.result!.tools).not.toContain('drop_table');
      expect(run.result!.steps!['call:drop_table']!.error).toContain('Forbidden');
      const mine = stack.log.audit().filter((l) => l.user === user);
      expect(mine.map((l) => l.method)).toContain('initialize');
      expect(mine.find((l) => l.tool === 'echo')).toMatchObject({ outcome: 'result', protocolVersion: '2025-11-25' });
    },
  );
});

describe.skipIf(!go)('MCP 2026-07-28 on the wire, through the sidecar to the go-sdk stateless server', () => {
  const stack = behindSidecar();
  let token: string;
  const META = {
    'io.modelcontextprotocol/protocolVersion': '2026-07-28',
    'io.modelcontextprotocol/clientCapabilities': {},
    'io.modelcontextprotocol/clientInfo': { name: 'wire-test', version: '1.0.0' },
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  };

  beforeAll(async () => {
    token = await stack.issuer.mint();
  });

  async function post(method: string, params: Record<string, unknown>, id: number, extra: Record<string, string> = {}, raw?: string) {
    const name = (params.name ?? params.uri) as string | undefined;
    const res = await fetch(`${stack.sidecar.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': method,
        ...(name === undefined ? {} : { 'mcp-name': name }),
        ...extra,
      },
      body: raw ?? JSON.stringify({ jsonrpc: '2.0', id, method, params: { ...params, _meta: META } }),
    });
    const text = await res.text();
    // One JSON body, or the JSON-RPC response among the events of a stream.
    const data = res.headers.get('content-type')?.startsWith('text/event-stream')
      ? text
          .split('\n')
          .filter((line) => line.startsWith('data: '))
          .map((line) => JSON.parse(line.slice(6)) as Record<string, unknown>)
          .find((message) => message.id === id)
      : (JSON.parse(text) as Record<string, unknown>);
    return { res, data: data as { result?: Record<string, unknown>; error?: { code: number; message: string } } };
  }

  it('lists and reads for this user only: cacheScope private (ttlMs kept), Cache-Control private, X-Accel-Buffering on streams', async () => {
    const listed = await post('resources/list', {}, 1);
    expect(listed.res.headers.get('cache-control')).toMatch(/^private/);
    expect(listed.data.result).toMatchObject({ cacheScope: 'private' });
    expect(listed.data.result).toHaveProperty('ttlMs');
    expect((listed.data.result!.resources as { uri: string }[]).map((r) => r.uri)).toEqual(['docs://alpha/readme']);
    const read = await post('resources/read', { uri: 'docs://alpha/readme' }, 2);
    expect(read.data.result).toMatchObject({ cacheScope: 'private', contents: [{ text: "alpha's readme" }] });
    if (read.res.headers.get('content-type')?.startsWith('text/event-stream')) expect(read.res.headers.get('x-accel-buffering')).toBe('no');
    const denied = await post('resources/read', { uri: 'docs://bravo/plan' }, 3);
    expect(denied.data.error!.code).toBe(RPC_CODES.policyDenied);
    const line = (await stack.log.waitForAudit((l) => l.rpcId === 2 && l.method === 'resources/read'))[0]!;
    expect(line).toMatchObject({ client: 'wire-test/1.0.0', protocolVersion: '2026-07-28', traceId: '0af7651916cd43dd8448eb211c80319c' });
  });

  it('refuses a subscription to a resource the user may not read, by the resources/read rule', async () => {
    const refused = await post('subscriptions/listen', { notifications: { resourceSubscriptions: ['docs://bravo/plan'] } }, 4);
    expect(refused.data.error).toMatchObject({ code: RPC_CODES.policyDenied });
    expect(refused.data.error!.message).toContain('docs://bravo/plan');
    expect((await stack.log.waitForAudit((l) => l.rpcId === 4))[0]).toMatchObject({ outcome: 'denied', method: 'subscriptions/listen' });
  });

  it('answers a 2026-07-28 request with JSON-RPC errors: a body it cannot read, a method the revision does not define', async () => {
    const notJson = await post('tools/list', {}, 5, {}, '{"jsonrpc":');
    expect(notJson.res.status).toBe(400);
    expect(notJson.data).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32700 } });
    const removed = await post('logging/setLevel', { level: 'info' }, 6);
    expect(removed.res.status).toBe(404);
    expect(removed.data).toMatchObject({ id: 6, error: { code: RPC_CODES.methodNotFound } });
    expect((await stack.log.waitForAudit((l) => l.rpcId === 6))[0]).toMatchObject({
      outcome: 'denied',
      rpcErrorCode: RPC_CODES.methodNotFound,
    });
    const discover = await post('server/discover', {}, 7);
    expect(discover.data.result).toHaveProperty('supportedVersions');
  });
});

describe.skipIf(!go)('where a client and the server disagree without the sidecar, the sidecar changes nothing', () => {
  let issuer: TestIssuer;
  let stateful: GoServer;
  let sidecar: RunningSidecar;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    // The go-sdk server as deployed by default: stateful, 2025 revisions only.
    stateful = await startGoServer();
    sidecar = await startSidecar(testEnv(issuer, { url: stateful.origin }));
  });
  afterAll(async () => {
    await sidecar?.close();
    await stateful?.close();
    await issuer?.close();
  });

  it('mcp-go v1.2.1 at its default against the stateful go-sdk v1.8.0 server: the same failure directly and through', async () => {
    const env = { MCP_PROTOCOL: 'default', MCP_STEPS: 'list,call:echo', ...ARGS };
    const direct = await runGoClient('mcpgo', stateful.url, undefined, env);
    const through = await runGoClient('mcpgo', `${sidecar.url}/mcp`, await issuer.mint(), env);
    expect(direct.code, direct.stderr).toBe(0);
    // Known: it falls back to initialize (2025-11-25) and then sends requests the server refuses.
    const failed = Object.values(direct.result!.steps!).filter((s) => s.error !== undefined);
    expect(failed.length).toBeGreaterThan(0);
    expect(through.code, through.stderr).toBe(direct.code);
    expect(through.result).toEqual(direct.result);
  });
});
