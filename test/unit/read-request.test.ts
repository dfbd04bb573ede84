import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { INVALID_REQUEST_CODE, readMessages, resolvesElsewhere, type ReadRequest } from '../../src/mcp/read-request.js';
import { allowsBatches } from '../../src/mcp/protocol-version.js';

// The one reading (src/mcp/read-request.ts): a body two mainstream servers could read differently
// is refused, every other one is read. Bodies are generated as member lists (so a name can be
// written twice, in another case, folded, or escaped), and what to expect is worked out from the
// list with JavaScript's own Unicode case folding (a /iu regular expression), not with the
// sidecar's Go table: the two must agree.

type Tree = string | number | boolean | null | Tree[] | { members: [string, Tree][] };

/** Equal under simple case folding, as a Go server matches a member name to a field. */
function foldEqual(a: string, b: string): boolean {
  return new RegExp(`^${a.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&')}$`, 'iu').test(b);
}

const READ_NAMES: Record<string, readonly string[]> = {
  message: ['jsonrpc', 'id', 'method', 'params', 'result', 'error'],
  params: ['name', 'uri', 'arguments', '_meta', 'cursor', 'ref', 'clientInfo', 'protocolVersion', 'requestId'],
  ref: ['type', 'name', 'uri'],
  clientInfo: ['name', 'version'],
  error: ['code', 'message', 'data'],
};
const CHILD: Record<string, Record<string, string>> = {
  message: { params: 'params', error: 'error' },
  params: { ref: 'ref', clientInfo: 'clientInfo' },
};

/** Whether some object names a member twice as a Go server reads names, or spells a read name otherwise. */
function twoReadings(tree: Tree, level: string | undefined): boolean {
  if (tree === null || typeof tree !== 'object') return false;
  if (Array.isArray(tree)) return tree.some((child) => twoReadings(child, undefined));
  const names = tree.members.map(([name]) => name);
  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++) if (foldEqual(names[i]!, names[j]!)) return true;
    if (level !== undefined && READ_NAMES[level]!.some((read) => read !== names[i] && foldEqual(read, names[i]!))) return true;
  }
  return tree.members.some(([name, value]) => twoReadings(value, level === undefined ? undefined : CHILD[level]?.[name]));
}

/** JSON text of a tree; `escape` picks the characters of member names written as \u escapes. */
function write(tree: Tree, escape: (index: number) => boolean): string {
  if (tree === null || typeof tree !== 'object') return JSON.stringify(tree);
  if (Array.isArray(tree)) return `[${tree.map((child) => write(child, escape)).join(',')}]`;
  const name = (text: string) =>
    `"${[...text]
      .map((character, i) =>
        escape(i)
          ? [...character].map((unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')
          : JSON.stringify(character).slice(1, -1),
      )
      .join('')}"`;
  return `{${tree.members.map(([key, value]) => `${name(key)}:${write(value, escape)}`).join(',')}}`;
}

// Names: MCP's own, their case and Unicode folds (ſ for s, K for k), and plain ones.
const NAMES = [
  'name',
  'Name',
  'NAME',
  'naMe',
  'uri',
  'URI',
  'arguments',
  'Arguments',
  'argumentſ',
  '_meta',
  '_Meta',
  'cursor',
  'params',
  'paramſ',
  'Params',
  'method',
  'Method',
  'id',
  'ID',
  'jsonrpc',
  'JSONRPC',
  'clientInfo',
  'clientinfo',
  'version',
  'Version',
  'table',
  'TABLE',
  'taBle',
  'kind',
  'Kind',
  '\u212aind',
  'ſql',
  'sql',
  'straße',
  'STRASSE',
  'Straße',
  'ΣΑΣ',
  'σας',
  'x',
  'é',
  'É',
];
const scalar = fc.oneof(fc.string({ maxLength: 6 }), fc.integer(), fc.boolean(), fc.constant(null));
const value: fc.Arbitrary<Tree> = fc.letrec<{ tree: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalar,
    fc.array(tie('tree'), { maxLength: 3 }),
    fc.array(fc.tuple(fc.constantFrom(...NAMES), tie('tree')), { maxLength: 4 }).map((members) => ({ members })),
  ),
})).tree;
const extra = fc.array(fc.tuple(fc.constantFrom(...NAMES), value), { maxLength: 2 });

/** A tools/call (or initialize) message, with extra members mixed in at the message, params, arguments and clientInfo levels. */
const message = fc
  .record({
    id: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.constantFrom('a', 'b', '1')),
    kind: fc.constantFrom('tools/call', 'initialize'),
    atMessage: extra,
    atParams: extra,
    atInner: extra,
  })
  .map(({ id, kind, atMessage, atParams, atInner }): Tree => {
    const inner: Tree =
      kind === 'tools/call'
        ? { members: [['table', 'alpha_orders'], ...atInner] }
        : { members: [['name', 'client'], ['version', '1'], ...atInner] };
    const params: Tree = {
      members:
        kind === 'tools/call'
          ? [['name', 'query'], ['arguments', inner], ...atParams]
          : [['protocolVersion', '2025-03-26'], ['clientInfo', inner], ...atParams],
    };
    return {
      members: [['jsonrpc', '2.0'], ['id', id], ['method', kind], ['params', params], ...atMessage],
    };
  });

const read = (text: string, version = '2025-11-25') => readMessages(Buffer.from(text), version);

describe('the one reading of a request body', () => {
  it('refuses exactly the bodies with two readings: case and Unicode folding, duplicate names at every level, escaped names', () => {
    fc.assert(
      fc.property(message, fc.func(fc.boolean()), (tree, escape) => {
        const text = write(tree, (i) => escape(i));
        const result = read(text);
        if (twoReadings(tree, 'message')) {
          expect(result, text).toMatchObject({ outcome: 'invalid_request', status: 400, rpcCode: INVALID_REQUEST_CODE });
        } else {
          expect(result, text).toMatchObject({ kind: 'read' });
          const { messages } = result as ReadRequest;
          const params = JSON.parse(text).params as Record<string, unknown>;
          // An initialize keeps only the clientInfo name and version it reads (cut, in flight and in the session).
          if (messages[0]!.method === 'initialize') {
            const info = params.clientInfo as Record<string, unknown>;
            expect(messages[0]!.params).toEqual({ ...params, clientInfo: { name: info.name, version: info.version } });
          } else expect(messages[0]!.params).toEqual(params);
        }
      }),
      { numRuns: 1500 },
    );
  });

  it('finds a folded or duplicated name however deep in the arguments it is', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 }),
        fc.constantFrom(['a', 'a'], ['a', 'A'], ['s', 'ſ'], ['k', '\u212a'], ['ß', 'ẞ']),
        (depth, [one, two]) => {
          const nested = `${'{"x":'.repeat(depth)}{"${one}":1,"${two}":2}${'}'.repeat(depth)}`;
          const text = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":{"deep":${nested}}}}`;
          expect(read(text)).toMatchObject({ outcome: 'invalid_request' });
        },
      ),
    );
  });

  it('reads names that only look alike to Go when they are not (ı is not i, İ is not I)', () => {
    const text = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":{"ı":1,"i":2,"İ":3,"I4":4}}}';
    expect(read(text)).toMatchObject({ kind: 'read' });
  });

  it('refuses half a surrogate pair written as an escape, anywhere, and reads whole pairs', () => {
    for (const text of [
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop\\ud800"}}',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":{"a":["x\\udc00"]}}}',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":{"\\udbff":1}}}',
    ]) {
      expect(read(text), text).toMatchObject({ outcome: 'invalid_request' });
    }
    expect(
      read('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q\\ud83d\\ude00","arguments":{"\\\\ud800":1}}}'),
    ).toMatchObject({
      kind: 'read',
    });
  });

  it('refuses a batch with two requests of the same id, numbers and strings apart', () => {
    const request = (id: unknown, method = 'tools/list') => JSON.stringify({ jsonrpc: '2.0', id, method });
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: 0, max: 6 }), fc.constantFrom('1', '2', 'x'), fc.constant(undefined)), {
          minLength: 1,
          maxLength: 6,
        }),
        (ids) => {
          const body = `[${ids.map((id) => (id === undefined ? '{"jsonrpc":"2.0","method":"notifications/initialized"}' : request(id))).join(',')}]`;
          const keys = ids.filter((id) => id !== undefined).map((id) => `${typeof id}:${id}`);
          const result = read(body, '2025-03-26');
          if (new Set(keys).size < keys.length) expect(result, body).toMatchObject({ outcome: 'invalid_request', id: null });
          else expect(result, body).toMatchObject({ kind: 'read', batch: true });
        },
      ),
    );
    // 1 and 1.0 are the same number: the same id.
    expect(read(`[${request(1)},{"jsonrpc":"2.0","id":1.0,"method":"ping"}]`, '2025-03-26')).toMatchObject({ outcome: 'invalid_request' });
  });

  it('refuses batches from protocol version 2025-06-18 on', () => {
    const batch = '[{"jsonrpc":"2.0","id":1,"method":"ping"}]';
    for (const version of ['2024-11-05', '2025-03-26']) expect(read(batch, version)).toMatchObject({ kind: 'read', batch: true });
    for (const version of ['2025-06-18', '2025-11-25', '2026-07-28', 'nonsense', '2025-03-26, 2025-06-18']) {
      expect(read(batch, version), version).toMatchObject({ outcome: 'invalid_request' });
      expect(allowsBatches(version)).toBe(false);
    }
  });

  it('refuses resource URIs that resolve elsewhere, in resources/read, subscribe, unsubscribe and completion refs', () => {
    const uri = 'file:///public/%2E%2e/secret';
    for (const params of [
      { method: 'resources/read', params: { uri } },
      { method: 'resources/subscribe', params: { uri } },
      { method: 'resources/unsubscribe', params: { uri } },
      { method: 'completion/complete', params: { ref: { type: 'ref/resource', uri }, argument: { name: 'a', value: '' } } },
    ]) {
      expect(read(JSON.stringify({ jsonrpc: '2.0', id: 9, ...params })), params.method).toMatchObject({
        outcome: 'invalid_request',
        id: 9,
      });
    }
    expect(read(JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'resources/read', params: { uri: 'file:///public/a.b' } }))).toMatchObject({
      kind: 'read',
    });
  });

  it('says not_json and not_json_rpc apart from refusals (without a guard those pass unread)', () => {
    expect(read('{"jsonrpc":')).toEqual({ kind: 'unreadable', problem: 'not_json' });
    expect(read(Buffer.from([0xff, 0xfe]).toString('latin1'))).toEqual({ kind: 'unreadable', problem: 'not_json' });
    expect(read('[]', '2025-03-26')).toEqual({ kind: 'unreadable', problem: 'not_json_rpc' });
    expect(read('{"jsonrpc":"1.0","id":1,"method":"ping"}')).toEqual({ kind: 'unreadable', problem: 'not_json_rpc' });
  });
});

describe('resource URIs as a server resolves them', () => {
  const dots = ['.', '..', '%2e', '%2E%2e', '.%2e', '%252e%252E', '%25252e.', '．．', '‥', '..;jsessionid=1', '%EF%BC%8E%EF%BC%8E'];
  const separators = ['/', '\\', '%2f', '%5C'];

  it('refuses a dot segment in any spelling, between any separators', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...dots),
        fc.constantFrom(...separators),
        fc.constantFrom('file:///public', 'db://tables', 'mem:'),
        (dot, slash, base) => {
          expect(resolvesElsewhere(`${base}${slash}${dot}${slash}secret`)).toBe(true);
          expect(resolvesElsewhere(`${base}${slash}${dot}`)).toBe(true);
        },
      ),
    );
  });

  it('refuses an unreserved character percent-encoded, and reads every other URI as written', () => {
    for (const letter of ['%61', '%2D', '%5f', '%7E', '%30', '%2561']) expect(resolvesElsewhere(`file:///p/x${letter}`), letter).toBe(true);
    for (const fine of [
      'file:///public/a.b',
      'db://x/a..b/c',
      'file:///p/%20x%2Fy',
      'file:///p/%e9',
      'x:..',
      'file:///p/x#/../y',
      'file:///p/...',
    ])
      expect(resolvesElsewhere(fine), fine).toBe(false);
  });
});
