import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startMcpServer, type McpTestServer, type RanCallFields } from '../helpers/mcp-server.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { startGoServer, useGo, type GoServer } from '../helpers/go.js';
import { openSession, rawPost, type RawAnswer, type RawTarget } from '../helpers/mcp-raw.js';
import { goFoldKey } from '../../src/lib/go-fold.js';

// The differential suite of the one reading: every way the red team found to make the sidecar
// and the server read one request differently, sent through the sidecar to three real servers
// (the TypeScript SDK, the go-sdk v1.8.0 and mcp-go v1.2.1, whose handlers bind arguments with
// encoding/json). For each request, either the sidecar refuses it and the server runs nothing,
// or every call the server runs is the one an audit line of that request names: the same tool,
// prompt or resource, with the same arguments, and never one the policy denies.

const go = useGo();

// Allows the read-only tools, the public files and the prompt; denies drop_table outright.
const POLICY = `rules:
  - name: read-only-tools
    effect: allow
    when: mcp.method == "tools/call" && (mcp.tool == "query" || mcp.tool == "echo")
  - name: public-files
    effect: allow
    when: mcp.resource.startsWith("file:///public/")
  - name: greet
    effect: allow
    when: mcp.prompt == "greet"
  - name: nobody-drops
    effect: deny
    when: mcp.tool == "drop_table"
`;

interface Upstream {
  kind: 'ts-sdk' | 'go-sdk' | 'mcp-go';
  /** For UPSTREAM_URL. */
  origin: string;
  ran: RanCallFields[];
  waitForRan(where: (call: RanCallFields) => boolean): Promise<unknown>;
  close(): Promise<void>;
}

/** The input properties of each tool: what a server's handler reads of the arguments. */
const FIELDS: Record<string, string[]> = { query: ['sql'], echo: ['text'], drop_table: ['table'] };

async function startUpstream(kind: Upstream['kind']): Promise<Upstream> {
  if (kind === 'ts-sdk') {
    const server: McpTestServer = await startMcpServer({ calls: true });
    return { kind, origin: server.url, ran: server.ran, waitForRan: (where) => server.waitForRan(where), close: () => server.close() };
  }
  const server: GoServer = await startGoServer(undefined, { kind: kind === 'go-sdk' ? 'gosdk' : 'mcpgo' });
  return { kind, origin: server.origin, ran: server.ran, waitForRan: (where) => server.waitForRan(where), close: () => server.close() };
}

describe.skipIf(!go).each(['ts-sdk', 'go-sdk', 'mcp-go'] as const)('one reading, through the sidecar to the %s server', (kind) => {
  let issuer: TestIssuer;
  let upstream: Upstream;
  let sidecar: RunningSidecar;
  let log: CapturedLog;
  let alice: RawTarget;
  let sentinels = 0;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream(kind);
    const dir = mkdtempSync(join(tmpdir(), 'one-reading-'));
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    log = captureLog();
    sidecar = await startSidecar(
      testEnv(
        issuer,
        { url: upstream.origin },
        {
          LOG_LEVEL: 'info',
          POLICY_FILE: join(dir, 'policy.yaml'),
          RATE_LIMIT_TOOL_PER_MINUTE: '100000',
          AUDIT_ARGUMENTS: 'values',
          AUDIT_ARGUMENT_BYTES: '4096',
        },
      ),
      { logger: log.logger },
    );
    alice = await openSession(`${sidecar.url}/mcp`, await issuer.mint({ sub: 'alice-sub', preferred_username: 'alice' }));
  }, 60_000);
  afterAll(async () => {
    await sidecar?.close();
    await upstream?.close();
    await issuer?.close();
  });

  /**
   * What the server ran for one request, and the audit lines of it: a sentinel call follows the
   * request through the same session, and once the server has run it, everything the request
   * made it run has run too.
   */
  async function outcome(answer: RawAnswer, ranBefore: number): Promise<{ ran: RanCallFields[]; lines: Record<string, unknown>[] }> {
    const text = `sentinel-${++sentinels}`;
    await rawPost(alice, { jsonrpc: '2.0', id: `s${sentinels}`, method: 'tools/call', params: { name: 'echo', arguments: { text } } });
    await upstream.waitForRan((call) => call.arguments?.text === text);
    const ran = upstream.ran.slice(ranBefore).filter((call) => call.arguments?.text !== text);
    return { ran, lines: log.audit().filter((line) => line.reqId === answer.reqId) };
  }

  /** The invariant: refused and nothing ran, or each call that ran is the one an audit line names. */
  function expectOneReading(answer: RawAnswer, ran: RanCallFields[], lines: Record<string, unknown>[], sent: string): void {
    expect(lines.length, `no audit line for ${sent}`).toBeGreaterThan(0);
    if (lines.every((line) => line.outcome === 'invalid_request' || line.outcome === 'forbidden_session')) {
      expect([400, 403], sent).toContain(answer.status);
      expect(ran, `refused, yet the server ran: ${sent}`).toEqual([]);
      return;
    }
    const unused = [...lines];
    for (const call of ran) {
      expect(call.tool, `the server ran drop_table, which the policy denies: ${sent}`).not.toBe('drop_table');
      const index = unused.findIndex((line) => {
        if (line.method !== call.method || !['result', 'tool_error'].includes(String(line.outcome))) return false;
        const args = (line.arguments ?? {}) as Record<string, unknown>;
        if (call.method === 'tools/call') {
          return line.tool === call.tool && FIELDS[call.tool!]!.every((f) => (call.arguments?.[f] ?? '') === (args[f] ?? ''));
        }
        if (call.method === 'prompts/get') return line.prompt === call.prompt && (call.arguments?.who ?? '') === (args.who ?? '');
        return line.resource === call.resolved;
      });
      expect(index, `the server ran ${JSON.stringify(call)}, no audit line names it: ${sent}\n${JSON.stringify(lines)}`).not.toBe(-1);
      unused.splice(index, 1);
    }
  }

  async function send(body: string, headers: Record<string, string> = {}, target = alice): Promise<RawAnswer> {
    const before = upstream.ran.length;
    const answer = await rawPost(target, body, headers);
    const { ran, lines } = await outcome(answer, before);
    expectOneReading(answer, ran, lines, body);
    return answer;
  }

  // ---- Generated bodies: case and Unicode folding, duplicate names at every level, escaped names.

  type Tree = string | number | boolean | null | { members: [string, Tree][] };
  const write = (tree: Tree, escape: (i: number) => boolean): string => {
    if (tree === null || typeof tree !== 'object') return JSON.stringify(tree);
    const name = (text: string) =>
      `"${[...text].map((c, i) => (escape(i) ? [...c].map((u) => `\\u${u.charCodeAt(0).toString(16).padStart(4, '0')}`).join('') : c)).join('')}"`;
    return `{${tree.members.map(([key, value]) => `${name(key)}:${write(value, escape)}`).join(',')}}`;
  };
  const variants = (name: string) =>
    fc.constantFrom(name, name.toUpperCase(), name[0]!.toUpperCase() + name.slice(1), name.replaceAll('s', 'ſ'));
  /** Mostly nothing, sometimes a member or two. */
  const sometimes = <T>(members: fc.Arbitrary<T>) =>
    fc.oneof({ weight: 2, arbitrary: fc.constant([] as T[]) }, fc.array(members, { minLength: 1, maxLength: 2 }));
  const strings = fc.constantFrom('alpha', 'drop everything', '');
  // Objects below the arguments (a handler may bind them to nested structs): names written twice,
  // folded by case, by ſ and by the Kelvin sign, one level down and two.
  const nested = fc.constantFrom<Tree>(
    {
      members: [
        ['key', '1'],
        ['Key', '2'],
      ],
    },
    {
      members: [
        ['key', '1'],
        ['key', '2'],
      ],
    },
    {
      members: [
        ['key', '1'],
        ['\u212aey', '2'],
      ],
    },
    {
      members: [
        [
          'key',
          {
            members: [
              ['s', '1'],
              ['ſ', '2'],
            ],
          },
        ],
      ],
    },
    { members: [['key', { members: [['s', '1']] }]] },
  );
  // A name may come twice exactly, or folded (more come from the members added to params and the message).
  const argumentsOf = (tool: string) =>
    fc.array(
      fc.tuple(
        fc.oneof({ weight: 3, arbitrary: fc.constantFrom(FIELDS[tool]![0]!, 'limit', 'other') }, variants(FIELDS[tool]![0]!)),
        strings,
      ),
      { maxLength: 3 },
    );
  const nestedArguments = fc.array(fc.tuple(fc.constantFrom('limit', 'other'), nested), { maxLength: 1 });
  const plainArguments = (tool: string) =>
    fc.uniqueArray(fc.tuple(fc.constantFrom(FIELDS[tool]![0]!, 'limit', 'other'), strings), { maxLength: 3, selector: ([name]) => name });
  // Half plain calls (read and run as written), half with names added that a Go server reads apart.
  const call = fc
    .record({
      tool: fc.constantFrom('query', 'echo', 'drop_table'),
      id: fc.integer({ min: 1, max: 1_000_000 }),
      twoReadings: fc.boolean(),
      atParams: sometimes(
        fc.tuple(
          fc.oneof(variants('name'), variants('arguments'), variants('_meta')),
          fc.constantFrom<Tree>('drop_table', 'query', { members: [] }),
        ),
      ),
      atMessage: sometimes(
        fc.tuple(
          fc.oneof(variants('method'), variants('params'), variants('id'), variants('jsonrpc')),
          fc.constantFrom<Tree>('tools/list', 3, { members: [] }),
        ),
      ),
      below: nestedArguments,
    })
    .chain(({ tool, twoReadings, atParams, atMessage, id, below }) =>
      (twoReadings ? argumentsOf(tool) : plainArguments(tool)).map((args) => ({
        tool,
        id,
        args: twoReadings ? [...args, ...below] : args,
        atParams: twoReadings ? atParams : [],
        atMessage: twoReadings ? atMessage : [],
      })),
    );

  /** Whether two member names of one object, at any depth, are equal or equal under Go's folding. */
  const collides = (tree: Tree): boolean => {
    if (tree === null || typeof tree !== 'object') return false;
    const keys = tree.members.map(([name]) => goFoldKey(name));
    return new Set(keys).size < keys.length || tree.members.some(([, value]) => collides(value));
  };

  it('refuses, or runs exactly what the audit names, for generated bodies with folded, duplicated and escaped member names', async () => {
    let refused = 0;
    let ran = 0;
    await fc.assert(
      fc.asyncProperty(call, fc.func(fc.boolean()), async ({ tool, id, args, atParams, atMessage }, escape) => {
        const tree: Tree = {
          members: [
            ['jsonrpc', '2.0'],
            ['id', id],
            ['method', 'tools/call'],
            ['params', { members: [['name', tool], ['arguments', { members: args }], ...atParams] }],
            ...atMessage,
          ],
        };
        const body = write(tree, (i) => escape(i));
        const answer = await send(body);
        const wasRefused = log.audit().some((line) => line.reqId === answer.reqId && line.outcome === 'invalid_request');
        // Names that collide, at any level, are always refused (escaped or not).
        if (collides(tree)) expect(wasRefused, `not refused: ${body}`).toBe(true);
        if (wasRefused) refused++;
        else ran++;
      }),
      { numRuns: 60 },
    );
    // Both sides of the property were exercised.
    expect(refused).toBeGreaterThan(5);
    expect(ran).toBeGreaterThan(5);
  }, 120_000);

  it('refuses each folded spelling the red team used: Name/name, Method/method, paramſ, SQL beside sql, a lone SQL', async () => {
    const bodies = [
      '{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"query","Name":"drop_table","arguments":{}}}',
      '{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"NAME":"drop_table","arguments":{}}}',
      '{"jsonrpc":"2.0","id":13,"method":"tools/list","Method":"tools/call","params":{"name":"drop_table"}}',
      '{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":"query"},"paramſ":{"name":"drop_table"}}',
      '{"jsonrpc":"2.0","id":15,"method":"tools/call","params":{"name":"query","arguments":{"sql":"select 1","SQL":"drop table t"}}}',
      '{"jsonrpc":"2.0","id":16,"method":"tools/call","params":{"name":"query","arguments":{"SQL":"drop table t"}}}',
      '{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"\\u006eame":"query","name":"drop_table"}}',
    ];
    for (const body of bodies) {
      const answer = await send(body);
      expect(answer.status, body).toBe(400);
      expect(answer.messages[0]).toMatchObject({ jsonrpc: '2.0', error: { code: -32013 } });
    }
  });

  it('refuses generated batches whose ids are equal in any spelling, and runs the others as the audit names them', async () => {
    // Spellings of ids: numbers JavaScript reads as one (1, 1.0, 1e0; 2^53 and 2^53 + 1, which Go
    // keeps apart), a string and its escaped form, and ids of other types that are not equal.
    const ids = ['1', '1.0', '1e0', '"1"', '"a"', '"\\u0061"', '2', '9007199254740992', '9007199254740993'];
    const member = fc.record({
      id: fc.constantFrom(...ids),
      tool: fc.constantFrom('query', 'echo', 'drop_table'),
      value: fc.constantFrom('alpha', 'beta', 'gamma'),
    });
    let refused = 0;
    let judged = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(member, { minLength: 2, maxLength: 3 }), async (members) => {
        const body = `[${members
          .map(({ id, tool, value }) => {
            const args = JSON.stringify({ [FIELDS[tool]![0]!]: value });
            return `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"${tool}","arguments":${args}}}`;
          })
          .join(',')}]`;
        const keys = members.map(({ id }) => JSON.stringify(JSON.parse(id)));
        const answer = await send(body, { 'mcp-protocol-version': '2025-03-26' });
        const wasRefused = log.audit().some((line) => line.reqId === answer.reqId && line.outcome === 'invalid_request');
        expect(wasRefused, body).toBe(new Set(keys).size < keys.length);
        if (wasRefused) {
          expect(answer.status, body).toBe(400);
          refused++;
        } else judged++;
      }),
      { numRuns: 30 },
    );
    expect(refused).toBeGreaterThan(3);
    expect(judged).toBeGreaterThan(3);
  }, 120_000);

  it('refuses a batch with two requests of one id, and any batch from 2025-06-18 on', async () => {
    const q = (id: number, sql: string) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'query', arguments: { sql } } });
    const twice = await send(JSON.stringify([q(21, 'a'), q(21, 'b')]), { 'mcp-protocol-version': '2025-03-26' });
    expect(twice.status).toBe(400);
    expect(twice.text).toContain('same id');
    const modern = await send(JSON.stringify([q(22, 'a'), q(23, 'b')]));
    expect(modern.status).toBe(400);
    expect(modern.text).toContain('batches are not part of MCP protocol version 2025-11-25');
    // A batch where batches exist: judged message by message, each call audited.
    const old = await send(JSON.stringify([q(24, 'a'), q(25, 'b')]), { 'mcp-protocol-version': '2025-03-26' });
    // mcp-go reads no batches (its own error, nothing ran); the SDKs answer each call.
    if (kind !== 'mcp-go') expect(old.messages.map((m) => m.id).sort()).toEqual([24, 25]);
  });

  it('refuses resource URIs with dot segments in any spelling, and reads the public file the audit names', async () => {
    for (const uri of [
      'file:///public/../secret',
      'file:///public/%2e%2e/secret',
      'file:///public/%252E%252E/secret',
      'file:///public/./%2E./secret',
    ]) {
      const answer = await send(JSON.stringify({ jsonrpc: '2.0', id: 31, method: 'resources/read', params: { uri } }));
      expect(answer.status, uri).toBe(400);
    }
    const before = upstream.ran.length;
    const plain = await send(
      JSON.stringify({ jsonrpc: '2.0', id: 32, method: 'resources/read', params: { uri: 'file:///public/readme' } }),
    );
    expect(plain.status).toBe(200);
    expect(upstream.ran.slice(before).find((c) => c.method === 'resources/read')).toMatchObject({ resolved: 'file:///public/readme' });
  });

  it('keeps a session to the subject that created it: another gets 403 and a JSON-RPC error, audited, never the upstream', async () => {
    const bob = { ...alice, token: await issuer.mint({ sub: 'bob-sub', preferred_username: 'bob' }) };
    const call = JSON.stringify({ jsonrpc: '2.0', id: 41, method: 'tools/call', params: { name: 'query', arguments: { sql: 'bob' } } });
    const answer = await send(call, {}, bob);
    expect(answer.status).toBe(403);
    expect(answer.messages[0]).toMatchObject({ id: 41, error: { code: -32004 } });
    expect(log.audit().find((l) => l.reqId === answer.reqId)).toMatchObject({ user: 'bob', outcome: 'forbidden_session', tool: 'query' });
    for (const method of ['GET', 'DELETE'] as const) {
      const res = await request(alice.url, {
        method,
        headers: { authorization: `Bearer ${bob.token}`, 'mcp-session-id': alice.sessionId!, accept: 'text/event-stream' },
      });
      expect(res.statusCode, method).toBe(403);
      await res.body.dump();
    }
    // Alice's session still works, with her own token.
    expect((await send(call.replace('"bob"', '"alice"'))).status).toBe(200);
  });

  it('refuses a body on another method than POST while a policy is configured', async () => {
    for (const method of ['PUT', 'PATCH', 'DELETE', 'GET']) {
      const before = upstream.ran.length;
      const answer = await rawPost(
        alice,
        { jsonrpc: '2.0', id: 51, method: 'tools/call', params: { name: 'drop_table', arguments: {} } },
        {},
        method,
      );
      expect(answer.status, method).toBe(400);
      expect(answer.messages[0]).toMatchObject({ error: { code: -32013 } });
      const { ran } = await outcome(answer, before);
      expect(ran).toEqual([]);
    }
  });

  it('audits a call with arguments nested 5,000 deep (AUDIT_ARGUMENTS=values): the line is written, the answer arrives, no reset', async () => {
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    const answer = await send(
      `{"jsonrpc":"2.0","id":61,"method":"tools/call","params":{"name":"query","arguments":{"sql":"deep","deep":${deep}}}}`,
    );
    // The go-sdk refuses so deep a value itself (HTTP 400); the others run the call.
    if (kind === 'go-sdk') expect(answer.status).toBe(400);
    else expect(answer.messages[0]).toMatchObject({ id: 61, result: expect.anything() });
    const line = log.audit().find((l) => l.reqId === answer.reqId)!;
    expect(line).toMatchObject({ tool: 'query', argumentNames: ['sql', 'deep'], outcome: kind === 'go-sdk' ? 'upstream_error' : 'result' });
    expect(line).not.toHaveProperty('auditError');
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    expect(metrics).toContain('mcp_auth_upstream_failures_total{kind="reset"} 0');
  });

  it('cuts client names and versions, tool names and ids to their documented lengths in audit lines and answers', async () => {
    // Under MCP_MAX_BODY_BYTES (1 MiB) together: the body is read.
    const big = 'x'.repeat(300_000);
    const session = await openSession(`${sidecar.url}/mcp`, alice.token, { name: big, version: big });
    const answer = await rawPost(session, { jsonrpc: '2.0', id: big, method: 'tools/call', params: { name: big, arguments: {} } });
    expect(answer.text.length).toBeLessThan(600_000); // the id is echoed, as JSON-RPC wants; the name is not
    expect(JSON.stringify(answer.messages[0]!.error)).toMatch(/x…/);
    expect(JSON.stringify(answer.messages[0]!.error).length).toBeLessThan(600);
    const line = log.audit().find((l) => l.reqId === answer.reqId)!;
    expect(line.client).toBe(`${'x'.repeat(128)}…/${'x'.repeat(64)}…`);
    expect(String(line.tool).length).toBeLessThanOrEqual(257);
    expect(String(line.rpcId).length).toBeLessThanOrEqual(129);
  });
});

// The TypeScript SDK's legacy HTTP+SSE server answers a message POSTed to /messages whatever the
// HTTP method: an upstream that routes by path. Through the sidecar a body on any other method
// is refused while a policy is configured.
describe('a body on a method other than POST, to a server that routes by path', () => {
  let issuer: TestIssuer;
  let server: McpTestServer;
  let sidecar: RunningSidecar;

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    server = await startMcpServer({ calls: true });
    const dir = mkdtempSync(join(tmpdir(), 'one-reading-'));
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    sidecar = await startSidecar(testEnv(issuer, server, { POLICY_FILE: join(dir, 'policy.yaml') }));
  });
  afterAll(async () => {
    await sidecar?.close();
    await server?.close();
    await issuer?.close();
  });

  /** Opens the legacy SSE stream at `base` (kept open until close) and returns the /messages endpoint it names. */
  async function legacyEndpoint(base: string, token?: string): Promise<{ endpoint: string; close: () => void }> {
    const controller = new AbortController();
    const res = await request(`${base}/sse`, {
      headers: { accept: 'text/event-stream', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      signal: controller.signal,
    });
    const close = () => controller.abort();
    let text = '';
    const endpoint = await new Promise<string>((resolve, reject) => {
      res.body.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        const match = /data: (\S+)/.exec(text);
        if (match) resolve(`${base}${match[1]}`);
      });
      res.body.on('error', () => {});
      res.body.on('end', () => reject(new Error(`no endpoint event: ${res.statusCode} ${text}`)));
    });
    return { endpoint, close };
  }

  it("keeps a legacy session (its endpoint's ?sessionId=) to the subject that used it first", async () => {
    const token = await issuer.mint({ sub: 'alice-sub', preferred_username: 'alice' });
    const bob = await issuer.mint({ sub: 'bob-sub', preferred_username: 'bob' });
    const stream = await legacyEndpoint(sidecar.url, token);
    try {
      const init = (who: string) =>
        request(stream.endpoint, {
          method: 'POST',
          headers: { authorization: `Bearer ${who}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            jsonrpc: '2.0',
            id: 0,
            method: 'initialize',
            params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
          }),
        });
      const mine = await init(token);
      expect(mine.statusCode).toBe(202);
      await mine.body.dump();
      const theirs = await init(bob);
      expect(theirs.statusCode).toBe(403);
      expect(await theirs.body.json()).toMatchObject({ error: { code: -32004 } });
    } finally {
      stream.close();
    }
  });

  it('runs a PUT directly (the class is real) and refuses it through the sidecar', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'drop_table', arguments: { table: 't' } } });
    const init = (endpoint: string, headers: Record<string, string>) =>
      request(endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 0,
          method: 'initialize',
          params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
        }),
      });
    const direct = await legacyEndpoint(server.url);
    try {
      await (await init(direct.endpoint, {})).body.dump();
      const put = await request(direct.endpoint, { method: 'PUT', headers: { 'content-type': 'application/json' }, body });
      await put.body.dump();
      await server.waitForRan((c) => c.tool === 'drop_table');
    } finally {
      direct.close();
    }
    const token = await issuer.mint();
    const through = await legacyEndpoint(sidecar.url, token);
    try {
      const ranBefore = server.ran.length;
      await (await init(through.endpoint, { authorization: `Bearer ${token}` })).body.dump();
      const put = await request(through.endpoint, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
      });
      expect(put.statusCode).toBe(400);
      expect(await put.body.json()).toMatchObject({ error: { code: -32013 } });
      expect(server.ran.slice(ranBefore)).toEqual([]);
    } finally {
      through.close();
    }
  });
});
