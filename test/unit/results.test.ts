import { describe, expect, it } from 'vitest';
import { inputRequestKinds, privateScope } from '../../src/mcp/results.js';
import { PolicyGuard } from '../../src/mcp/policy/guard.js';
import { parsePolicy } from '../../src/mcp/policy/file.js';
import { clientMessage } from '../../src/mcp/messages.js';
import type { Identity } from '../../src/auth/verify.js';

const ann: Identity = { user: 'ann', subject: 's-ann', email: undefined, groups: ['/alpha'], roles: [], claims: {} };
const META_2026 = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };

describe('2026-07-28 results', () => {
  it('names the kinds of input an input_required result asks for, distinct and bounded', () => {
    const result = {
      resultType: 'input_required',
      inputRequests: {
        a: { method: 'elicitation/create', params: {} },
        b: { method: 'sampling/createMessage', params: {} },
        c: { method: 'elicitation/create', params: {} },
        d: 'not a request',
      },
      requestState: 'opaque',
    };
    expect(inputRequestKinds(result)).toEqual(['elicitation/create', 'sampling/createMessage']);
    expect(inputRequestKinds({ resultType: 'input_required', requestState: 'x' })).toEqual([]);
    expect(inputRequestKinds({ resultType: 'complete', content: [] })).toBeUndefined();
    const many = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, { method: `m${i}/${'x'.repeat(100)}` }]));
    const kinds = inputRequestKinds({ resultType: 'input_required', inputRequests: many })!;
    expect(kinds).toHaveLength(8);
    expect(kinds.every((k) => k.length <= 65)).toBe(true);
  });

  it('makes a cacheable result private, keeping ttlMs', () => {
    expect(privateScope({ tools: [], ttlMs: 60000, cacheScope: 'public' })).toEqual({ tools: [], ttlMs: 60000, cacheScope: 'private' });
    expect(privateScope({ tools: [], ttlMs: 5 })).toEqual({ tools: [], ttlMs: 5, cacheScope: 'private' });
    expect(privateScope({ tools: [], cacheScope: 'private' })).toBeUndefined();
  });

  it('under a policy, 2026-07-28 list and read results leave private, filtered or not; 2025 results keep their shape', () => {
    const rules = parsePolicy(`rules:
  - name: alpha
    effect: allow
    when: '"/alpha" in groups && (mcp.tool == "query" || mcp.resource.startsWith("docs://alpha/"))'
`).rules!;
    const guard = new PolicyGuard(rules, { mode: 'enforce' });
    const caller = { identity: ann, sessionId: undefined };
    const list = clientMessage('tools/list', 1, { _meta: META_2026 });
    const tools = { tools: [{ name: 'query' }, { name: 'drop' }], ttlMs: 30000, cacheScope: 'public', resultType: 'complete' };
    expect(guard.rewriteResult(list, tools, caller)).toEqual({
      tools: [{ name: 'query' }],
      ttlMs: 30000,
      cacheScope: 'private',
      resultType: 'complete',
    });
    const read = clientMessage('resources/read', 2, { uri: 'docs://alpha/a', _meta: META_2026 });
    expect(guard.rewrites('resources/read', read)).toBe(true);
    expect(guard.rewriteResult(read, { contents: [], ttlMs: 1000, cacheScope: 'public' }, caller)).toEqual({
      contents: [],
      ttlMs: 1000,
      cacheScope: 'private',
    });
    const old = clientMessage('resources/read', 3, { uri: 'docs://alpha/a' });
    expect(guard.rewrites('resources/read', old)).toBe(false);
    expect(guard.rewriteResult(clientMessage('tools/list', 4, {}), { tools: [{ name: 'query' }] }, caller)).toBeUndefined();
  });
});
