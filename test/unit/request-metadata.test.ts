import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { IncomingHttpHeaders } from 'node:http';
import { clientMessage } from '../../src/mcp/messages.js';
import { ParamHeaders, paramBindings } from '../../src/mcp/param-headers.js';
import { checkRequestMetadata, decodeHeaderValue } from '../../src/mcp/request-metadata.js';
import { RPC_CODES } from '../../src/lib/errors.js';

const { headerMismatch: HEADER_MISMATCH, invalidParams: INVALID_PARAMS } = RPC_CODES;
import { eraOf, isStatelessVersion } from '../../src/mcp/protocol-version.js';

// The 2026-07-28 headers against the body, as the sidecar reads them: header values as Node hands
// them over (bytes as Latin-1, surrounding white space gone), bodies as JSON.parse reads them.

const VERSION = '2026-07-28';
const META = { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientCapabilities': {} };

function message(method: string, params: Record<string, unknown> = {}, id: number | undefined = 1) {
  return clientMessage(method, id, { ...params, _meta: META });
}

/** What Node gives a server for a header value a client sent as these UTF-8 bytes (less surrounding SP and HTAB). */
function asReceived(value: string): string {
  return Buffer.from(value, 'utf8')
    .toString('latin1')
    .replace(/^[ \t]+|[ \t]+$/g, '');
}

const base64 = (value: string) => `=?base64?${Buffer.from(value, 'utf8').toString('base64')}?=`;

/** A header value as a client following the transport encodes it: plain when safe ASCII, else Base64. */
function encoded(value: string): string {
  const safe = /^[\x20-\x7e]*$/.test(value) && !/^[ \t]|[ \t]$/.test(value) && !(value.startsWith('=?base64?') && value.endsWith('?='));
  return safe ? value : base64(value);
}

function headers(method: string, extra: IncomingHttpHeaders = {}): IncomingHttpHeaders {
  return { 'mcp-protocol-version': VERSION, 'mcp-method': method, ...extra };
}

const NAMED = [
  ['tools/call', 'name'],
  ['prompts/get', 'name'],
  ['resources/read', 'uri'],
] as const;

describe('the era of a request', () => {
  it('is stateless from 2026-07-28 on, compared as the Go SDKs compare, or when _meta names a version', () => {
    expect(isStatelessVersion('2026-07-28')).toBe(true);
    expect(isStatelessVersion('2025-11-25')).toBe(false);
    expect(isStatelessVersion(undefined)).toBe(false);
    expect(eraOf('2025-06-18', false)).toBe('sessions');
    expect(eraOf(undefined, false)).toBe('sessions');
    expect(eraOf('2026-07-28', false)).toBe('stateless');
    expect(eraOf('2025-11-25', true)).toBe('stateless');
  });
});

describe('2026-07-28 request headers against the body', () => {
  it('passes a request whose headers say what the body says', () => {
    expect(checkRequestMetadata(headers('tools/list'), message('tools/list'))).toBeUndefined();
    expect(checkRequestMetadata(headers('tools/call', { 'mcp-name': 'query' }), message('tools/call', { name: 'query' }))).toBeUndefined();
    expect(
      checkRequestMetadata(
        headers('resources/read', { 'mcp-name': 'file:///a b.txt' }),
        message('resources/read', { uri: 'file:///a b.txt' }),
      ),
    ).toBeUndefined();
  });

  it('refuses a missing or different MCP-Protocol-Version, and a request without the _meta version (-32602)', () => {
    const missing = checkRequestMetadata({ 'mcp-method': 'tools/list' }, message('tools/list'));
    expect(missing).toMatchObject({ header: 'mcp-protocol-version', rpcCode: HEADER_MISMATCH });
    expect(missing!.message).toContain('MCP-Protocol-Version header is missing');
    const other = checkRequestMetadata(headers('tools/list', { 'mcp-protocol-version': '2025-11-25' }), message('tools/list'));
    expect(other).toMatchObject({ header: 'mcp-protocol-version', rpcCode: HEADER_MISMATCH });
    const noMeta = checkRequestMetadata(headers('tools/list'), clientMessage('tools/list', 1, {}));
    expect(noMeta).toMatchObject({ header: 'mcp-protocol-version', rpcCode: INVALID_PARAMS });
  });

  it('refuses a missing Mcp-Method on a request, and any Mcp-Method that is not the method (values are case-sensitive)', () => {
    expect(checkRequestMetadata({ 'mcp-protocol-version': VERSION }, message('tools/list'))).toMatchObject({ header: 'mcp-method' });
    expect(checkRequestMetadata(headers('TOOLS/LIST'), message('tools/list'))).toMatchObject({ header: 'mcp-method' });
    // Two Mcp-Method lines reach Node as one joined value.
    expect(checkRequestMetadata(headers('tools/list, tools/list'), message('tools/list'))).toMatchObject({ header: 'mcp-method' });
  });

  it('checks a notification only for the headers it sends', () => {
    const notification = clientMessage('notifications/cancelled', undefined, { requestId: 1 });
    expect(checkRequestMetadata({}, notification)).toBeUndefined();
    expect(checkRequestMetadata({ 'mcp-method': 'notifications/progress' }, notification)).toMatchObject({ header: 'mcp-method' });
  });

  it('refuses a missing Mcp-Name where the method names something, and a body without the name', () => {
    for (const [method, member] of NAMED) {
      expect(checkRequestMetadata(headers(method), message(method, { [member]: 'x' }))).toMatchObject({ header: 'mcp-name' });
      expect(checkRequestMetadata(headers(method, { 'mcp-name': 'x' }), message(method, {}))).toMatchObject({ header: 'mcp-name' });
    }
  });

  it('reads the Base64 form strictly: standard alphabet, padded, UTF-8; a value without both markers is literal', () => {
    expect(decodeHeaderValue(base64('Hello, 世界'))).toBe('Hello, 世界');
    expect(decodeHeaderValue('=?base64?SGVsbG8?=')).toBeUndefined(); // padding missing
    expect(decodeHeaderValue('=?base64?SGV-bG8=?=')).toBeUndefined(); // URL-safe alphabet
    expect(decodeHeaderValue('=?base64?/w==?=')).toBeUndefined(); // not UTF-8
    expect(decodeHeaderValue('=?base64?SGVsbG8=')).toBe('=?base64?SGVsbG8=');
    expect(decodeHeaderValue('SGVsbG8=?=')).toBe('SGVsbG8=?=');
    expect(decodeHeaderValue('=?base64?=')).toBe('=?base64?=');
    // Unencoded UTF-8 (the Go SDK sends names so) is read as the client's bytes.
    expect(decodeHeaderValue(asReceived('café'))).toBe('café');
  });

  it('passes every agreement: any name or URI, encoded as clients encode it, or Base64 always, or raw UTF-8', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...NAMED),
        // Any text UTF-8 can carry (no lone surrogates): ASCII, controls, white space, any script, emoji.
        fc.string({
          unit: fc.oneof(fc.string({ unit: 'binary-ascii', maxLength: 1 }), fc.string({ unit: 'grapheme', maxLength: 1 })),
          maxLength: 40,
        }),
        fc.constantFrom('client', 'base64', 'raw'),
        ([method, member], name, form) => {
          // Raw only where a client could send it so: no control characters, no surrounding white space.
          fc.pre(form !== 'raw' || (!/[\x00-\x08\x0a-\x1f\x7f]/.test(name) && !/^[ \t]|[ \t]$/.test(name)));
          const value = form === 'client' ? encoded(name) : form === 'base64' ? base64(name) : name;
          fc.pre(!(form === 'raw' && value.startsWith('=?base64?') && value.endsWith('?=')));
          const refusal = checkRequestMetadata(headers(method, { 'mcp-name': asReceived(value) }), message(method, { [member]: name }));
          expect(refusal).toBeUndefined();
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses every disagreement between Mcp-Name and the body, however the header is encoded', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...NAMED),
        fc.string({ unit: 'binary', maxLength: 40 }),
        fc.string({ unit: 'binary', maxLength: 40 }),
        fc.boolean(),
        ([method, member], sent, body, always) => {
          fc.pre(sent !== body);
          const value = always ? base64(sent) : encoded(sent);
          const refusal = checkRequestMetadata(headers(method, { 'mcp-name': asReceived(value) }), message(method, { [member]: body }));
          expect(refusal).toMatchObject({ header: 'mcp-name', rpcCode: HEADER_MISMATCH });
        },
      ),
      { numRuns: 500 },
    );
  });

  it('refuses every Mcp-Method and MCP-Protocol-Version that differ from the body', () => {
    const token = fc.stringMatching(/^[!-~]{1,30}$/);
    fc.assert(
      fc.property(token, token, (sent, body) => {
        fc.pre(sent !== body);
        expect(checkRequestMetadata(headers(sent), message(body))).toMatchObject({ header: 'mcp-method' });
        const versioned = clientMessage('tools/list', 1, { _meta: { ...META, 'io.modelcontextprotocol/protocolVersion': body } });
        expect(checkRequestMetadata(headers('tools/list', { 'mcp-protocol-version': sent }), versioned)).toMatchObject({
          header: 'mcp-protocol-version',
          rpcCode: HEADER_MISMATCH,
        });
      }),
    );
  });
});

describe('Mcp-Param headers where a listing marked the argument', () => {
  const schema = {
    type: 'object',
    properties: {
      region: { type: 'string', 'x-mcp-header': 'Region' },
      limit: { type: 'integer', 'x-mcp-header': 'Limit' },
      dry: { type: 'boolean', 'x-mcp-header': 'Dry-Run' },
      target: { type: 'object', properties: { zone: { type: 'string', 'x-mcp-header': 'Zone' } } },
      query: { type: 'string' },
    },
  };
  const tables = new ParamHeaders();
  tables.learn({
    tools: [
      { name: 'execute_sql', inputSchema: schema },
      { name: 'plain', inputSchema: { type: 'object' } },
    ],
  });
  const bindings = tables.of('execute_sql')!;
  const call = (args: Record<string, unknown>) => message('tools/call', { name: 'execute_sql', arguments: args });
  const sent = (params: Record<string, string>) => headers('tools/call', { 'mcp-name': 'execute_sql', ...params });

  it('learns the marked properties from tools/list, nested ones through properties, and none for other tools', () => {
    expect(bindings.map((b) => b.header).sort()).toEqual(['mcp-param-dry-run', 'mcp-param-limit', 'mcp-param-region', 'mcp-param-zone']);
    expect(bindings.find((b) => b.name === 'Zone')!.path).toEqual(['target', 'zone']);
    expect(tables.of('plain')).toBeUndefined();
    expect(paramBindings({ properties: { a: { items: { 'x-mcp-header': 'A' } } } })).toEqual([]);
  });

  it('passes headers equal to the arguments: strings exactly, booleans as true/false, integers as numbers (42.0 is 42)', () => {
    const args = { region: 'us-west1', limit: 42, dry: false, target: { zone: 'Zürich ' }, query: 'select 1' };
    const params = {
      'mcp-param-region': 'us-west1',
      'mcp-param-limit': '42.0',
      'mcp-param-dry-run': 'false',
      'mcp-param-zone': base64('Zürich '),
    };
    expect(checkRequestMetadata(sent(params), call(args), bindings)).toBeUndefined();
    // Absent and null arguments take no header.
    expect(checkRequestMetadata(sent({ 'mcp-param-region': 'eu' }), call({ region: 'eu', limit: null }), bindings)).toBeUndefined();
  });

  it('refuses a missing, extra, undecodable or different Mcp-Param header', () => {
    const cases: [Record<string, string>, Record<string, unknown>][] = [
      [{}, { region: 'eu' }],
      [{ 'mcp-param-region': 'eu' }, {}],
      [{ 'mcp-param-region': '=?base64?ZXU?=' }, { region: 'eu' }],
      [{ 'mcp-param-region': 'EU' }, { region: 'eu' }],
      [{ 'mcp-param-limit': '42.5' }, { limit: 42 }],
      [{ 'mcp-param-limit': '0x2A' }, { limit: 42 }],
      [{ 'mcp-param-limit': '42' }, { limit: 42.5 }],
      [{ 'mcp-param-dry-run': 'False' }, { dry: false }],
      [{ 'mcp-param-zone': 'a' }, { target: { zone: 'b' } }],
    ];
    for (const [params, args] of cases)
      expect(checkRequestMetadata(sent(params), call(args), bindings)).toMatchObject({ header: 'mcp-param' });
  });

  it('compares any integer numerically and any other value exactly, from generated inputs', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), fc.maxSafeInteger(), (a, b) => {
        const refusal = checkRequestMetadata(sent({ 'mcp-param-limit': String(a) }), call({ limit: b }), bindings);
        expect(refusal === undefined).toBe(a === b);
      }),
    );
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 30 }), fc.string({ unit: 'binary', maxLength: 30 }), (a, b) => {
        const refusal = checkRequestMetadata(sent({ 'mcp-param-region': asReceived(encoded(a)) }), call({ region: b }), bindings);
        expect(refusal === undefined).toBe(a === b);
      }),
    );
  });
});
