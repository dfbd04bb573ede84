import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { request } from 'undici';
import type { TestUpstream } from '../helpers/upstream.js';
import { startStack, type RunningSidecar, type TestStack } from '../helpers/sidecar.js';
import { captureLog, type CapturedLog } from '../helpers/log-capture.js';
import { RPC_CODES } from '../../src/lib/errors.js';

// MCP 2026-07-28 POSTs through the sidecar, from generated inputs: whatever headers and body say,
// a request whose MCP-Protocol-Version, Mcp-Method, Mcp-Name or Mcp-Param-* disagree with its body
// is refused (400, a JSON-RPC error naming the header, nothing upstream), and one whose headers
// agree (Base64 names and URIs included) is forwarded byte for byte.

const VERSION = '2026-07-28';
const META = { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientCapabilities': {} };
const NAMED: Record<string, 'name' | 'uri'> = { 'tools/call': 'name', 'prompts/get': 'name', 'resources/read': 'uri' };
const REGION_TOOL = {
  name: 'execute_sql',
  inputSchema: {
    type: 'object',
    properties: { region: { type: 'string', 'x-mcp-header': 'Region' }, limit: { type: 'integer', 'x-mcp-header': 'Limit' } },
  },
};

const base64 = (value: string) => `=?base64?${Buffer.from(value, 'utf8').toString('base64')}?=`;
/** As a client following the transport encodes a value: plain when it is safe ASCII, else Base64. */
function encoded(value: string): string {
  const safe = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(value) && !(value.startsWith('=?base64?') && value.endsWith('?='));
  return safe ? value : base64(value);
}

/** Text any client can send in JSON and (encoded) in a header: no lone surrogates. */
const text = fc.string({
  unit: fc.oneof(fc.string({ unit: 'binary-ascii', maxLength: 1 }), fc.string({ unit: 'grapheme', maxLength: 1 })),
  maxLength: 24,
});

describe('MCP 2026-07-28 request headers against the body, through the sidecar', () => {
  let stack: TestStack | undefined;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let log: CapturedLog;
  let token: string;

  beforeAll(async () => {
    log = captureLog();
    stack = await startStack({}, { logger: log.logger });
    ({ upstream, sidecar } = stack);
    token = await stack.issuer.mint();
    upstream.handle((_req, res, body) => {
      const message = JSON.parse(body) as { id?: number; method: string };
      const result = message.method === 'tools/list' ? { tools: [REGION_TOOL] } : {};
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
    });
    // The listing that marks execute_sql's arguments for Mcp-Param-Region and Mcp-Param-Limit.
    const listed = await post({ 'mcp-method': 'tools/list' }, { jsonrpc: '2.0', id: 0, method: 'tools/list', params: { _meta: META } });
    expect(listed.status).toBe(200);
  });
  afterAll(() => stack?.close());

  async function post(headers: Record<string, string>, body: unknown) {
    const raw = JSON.stringify(body);
    const res = await request(`${sidecar.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': VERSION,
        ...headers,
      },
      body: raw,
    });
    const text = await res.body.text();
    return {
      status: res.statusCode,
      headers: res.headers,
      json: text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>),
      raw,
    };
  }

  /** Sends one request; returns whether it reached the upstream, with the sidecar's answer when not. */
  async function forwarded(headers: Record<string, string>, body: Record<string, unknown>) {
    const before = upstream.seen.length;
    const answer = await post(headers, body);
    const reached = upstream.seen.length > before;
    if (reached) expect(upstream.seen.at(-1)!.body).toBe(answer.raw);
    return { reached, answer };
  }

  it('forwards every agreement: any name or URI, plain or Base64, and Mcp-Param values equal to the arguments', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...Object.keys(NAMED)), text, fc.boolean(), async (method, name, always) => {
        const params = { [NAMED[method]!]: name, _meta: META };
        const { reached, answer } = await forwarded(
          { 'mcp-method': method, 'mcp-name': always ? base64(name) : encoded(name) },
          { jsonrpc: '2.0', id: 1, method, params },
        );
        expect(answer.status).toBe(200);
        expect(reached).toBe(true);
      }),
      { numRuns: 60 },
    );
    await fc.assert(
      fc.asyncProperty(text, fc.maxSafeInteger(), async (region, limit) => {
        const params = { name: 'execute_sql', arguments: { region, limit }, _meta: META };
        const headers = {
          'mcp-method': 'tools/call',
          'mcp-name': 'execute_sql',
          'mcp-param-region': encoded(region),
          'mcp-param-limit': String(limit),
        };
        const { reached, answer } = await forwarded(headers, { jsonrpc: '2.0', id: 2, method: 'tools/call', params });
        expect(answer.status).toBe(200);
        expect(reached).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  it('refuses every disagreement: 400, a JSON-RPC error with the id naming the header, nothing upstream', async () => {
    const disagreement = fc.oneof(
      // Mcp-Name says another name or URI.
      fc
        .tuple(fc.constantFrom(...Object.keys(NAMED)), text, text, fc.boolean())
        .filter(([, a, b]) => a !== b)
        .map(([method, sent, body, always]) => ({
          header: 'Mcp-Name',
          headers: { 'mcp-method': method, 'mcp-name': always ? base64(sent) : encoded(sent) },
          message: { method, params: { [NAMED[method]!]: body, _meta: META } },
        })),
      // Mcp-Method says another method.
      fc
        .tuple(fc.constantFrom('tools/list', 'prompts/list', 'server/discover', 'tools/call'), fc.stringMatching(/^[!-~]{1,20}$/))
        .filter(([a, b]) => a !== b)
        .map(([method, sent]) => ({
          header: 'Mcp-Method',
          headers: { 'mcp-method': sent, 'mcp-name': 'x' },
          message: { method, params: { name: 'x', uri: 'x', _meta: META } },
        })),
      // MCP-Protocol-Version says another version than _meta.
      fc
        .stringMatching(/^[!-~]{1,12}$/)
        .filter((v) => v !== VERSION)
        .map((version) => ({
          header: 'MCP-Protocol-Version',
          headers: { 'mcp-method': 'tools/list' },
          message: { method: 'tools/list', params: { _meta: { ...META, 'io.modelcontextprotocol/protocolVersion': version } } },
        })),
      // Mcp-Param-Region or Mcp-Param-Limit differ from the argument.
      fc
        .tuple(text, text, fc.maxSafeInteger(), fc.maxSafeInteger())
        .filter(([a, b, c, d]) => a !== b || c !== d)
        .map(([sent, region, sentLimit, limit]) => ({
          header: 'Mcp-Param-',
          headers: {
            'mcp-method': 'tools/call',
            'mcp-name': 'execute_sql',
            'mcp-param-region': encoded(sent),
            'mcp-param-limit': String(sentLimit),
          },
          message: { method: 'tools/call', params: { name: 'execute_sql', arguments: { region, limit }, _meta: META } },
        })),
    );
    let id = 100;
    await fc.assert(
      fc.asyncProperty(disagreement, async ({ header, headers, message }) => {
        const rpcId = id++;
        const { reached, answer } = await forwarded(headers, { jsonrpc: '2.0', id: rpcId, ...message });
        expect(reached).toBe(false);
        expect(answer.status).toBe(400);
        const error = answer.json!.error as { code: number; message: string };
        expect(answer.json!.id).toBe(rpcId);
        expect(error.code).toBe(RPC_CODES.headerMismatch);
        expect(error.message).toContain(header);
      }),
      { numRuns: 120 },
    );
    const refused = log.audit().filter((l) => l.outcome === 'header_mismatch');
    expect(refused.length).toBeGreaterThanOrEqual(120);
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/mcp_auth_mcp_header_mismatches_total\{header="mcp-name"\} [1-9]/);
  });

  it('refuses a request without the _meta version (-32602), and missing headers (-32020)', async () => {
    const noMeta = await forwarded({ 'mcp-method': 'tools/list' }, { jsonrpc: '2.0', id: 7, method: 'tools/list', params: {} });
    expect(noMeta.reached).toBe(false);
    expect(noMeta.answer).toMatchObject({ status: 400, json: { id: 7, error: { code: RPC_CODES.invalidParams } } });
    const noMethod = await forwarded({}, { jsonrpc: '2.0', id: 8, method: 'tools/list', params: { _meta: META } });
    expect(noMethod.answer).toMatchObject({ status: 400, json: { id: 8, error: { code: RPC_CODES.headerMismatch } } });
    const noName = await forwarded(
      { 'mcp-method': 'tools/call' },
      { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'q', _meta: META } },
    );
    expect(noName.answer).toMatchObject({ status: 400, json: { id: 9, error: { code: RPC_CODES.headerMismatch } } });
    expect((noName.answer.json!.error as { message: string }).message).toContain('Mcp-Name header is missing');
    expect(noName.reached || noMethod.reached).toBe(false);
  });

  it('answers with Cache-Control private, a 2025 request as before', async () => {
    const modern = await post({ 'mcp-method': 'tools/list' }, { jsonrpc: '2.0', id: 10, method: 'tools/list', params: { _meta: META } });
    expect(modern.headers['cache-control']).toBe('private');
    const before = upstream.seen.length;
    const old = await post(
      { 'mcp-protocol-version': '2025-11-25' },
      { jsonrpc: '2.0', id: 11, method: 'tools/call', params: { name: 'q' } },
    );
    expect(old.status).toBe(200);
    expect(upstream.seen.length).toBe(before + 1);
  });
});
