import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AUDIT_BOUNDS, MAX_VALUE_DEPTH, createAuditWriter, cutUtf8, type AuditLine } from '../../src/mcp/audit.js';
import { captureLog } from '../helpers/log-capture.js';

// The audit line is built as text, most values quoted without JSON.stringify (audit.ts): every
// value must still come back from the line exactly as it went in.
describe('the audit line as text', () => {
  const base: AuditLine = {
    reqId: 'r-1',
    user: 'alice',
    subject: 's-1',
    binding: 'bearer',
    sessionId: 'sess-1',
    client: 'coder/2.24.1',
    protocolVersion: '2025-06-18',
    method: 'tools/call',
    tool: 'query',
    prompt: undefined,
    resource: undefined,
    arguments: { table: 'alpha_orders' },
    rpcId: 7,
    outcome: 'result',
    rpcErrorCode: undefined,
    policyRule: 'alpha-reads',
    durationMs: 1.25,
    bytesIn: 100,
    bytesOut: 200,
  };

  it('writes the 2026-07-28 fields: trace id, a retry, the input asked for, the notifications of a subscription', () => {
    const log = captureLog();
    const write = createAuditWriter(log.logger, { audit: true, auditArguments: 'names', auditArgumentBytes: 256 })!;
    write({
      ...base,
      traceId: '0af7651916cd43dd8448eb211c80319c',
      inputResponses: true,
      outcome: 'input_required',
      inputRequests: ['elicitation/create', 'odd "kind"'],
    });
    write({ ...base, method: 'subscriptions/listen', tool: undefined, arguments: undefined, outcome: 'cancelled', notifications: 3 });
    const [first, second] = log.audit();
    expect(first).toMatchObject({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      inputResponses: true,
      outcome: 'input_required',
      inputRequests: ['elicitation/create', 'odd "kind"'],
    });
    expect(second).toMatchObject({ method: 'subscriptions/listen', outcome: 'cancelled', notifications: 3 });
    expect(second).not.toHaveProperty('traceId');
  });

  it('gives back every string as written, however odd: quotes, backslashes, controls, unicode, lone surrogates, long ones', () => {
    const log = captureLog();
    const write = createAuditWriter(log.logger, { audit: true, auditArguments: 'names', auditArgumentBytes: 256 })!;
    const odd = [
      'plain',
      'with "quotes"',
      'back\\slash',
      'line\nbreak',
      'tab\there',
      '\u0000\u001f',
      'café',
      '😀',
      '\ud800',
      '\udfff x',
      '</script>',
      'a'.repeat(300),
      '',
      ' spaced name ',
      'x\u2028y',
    ];
    for (const value of odd) {
      write({
        ...base,
        reqId: value,
        user: value,
        subject: value,
        sessionId: value,
        client: value,
        protocolVersion: value,
        method: value,
        tool: value,
        policyRule: value,
        rpcId: value,
        arguments: { [value]: 1, other: 2 },
      });
    }
    log.logger.flush();
    const lines = log.audit();
    expect(lines).toHaveLength(odd.length);
    lines.forEach((line, i) => {
      const value = odd[i]!;
      expect(line, JSON.stringify(value)).toMatchObject({
        reqId: value,
        user: value,
        subject: value,
        sessionId: cutUtf8(value, AUDIT_BOUNDS.sessionId),
        client: cutUtf8(value, AUDIT_BOUNDS.client),
        protocolVersion: cutUtf8(value, AUDIT_BOUNDS.method),
        method: cutUtf8(value, AUDIT_BOUNDS.method),
        tool: cutUtf8(value, AUDIT_BOUNDS.name),
        policyRule: value,
        rpcId: cutUtf8(value, AUDIT_BOUNDS.rpcId),
      });
      // Names over 128 characters are cut and marked.
      expect(line.argumentNames).toEqual([value.length > 128 ? `${value.slice(0, 128)}…` : value, 'other']);
    });
  });

  it("cuts every string the client chose to its documented length, marked '…', however long it was", () => {
    const log = captureLog();
    const write = createAuditWriter(log.logger, { audit: true, auditArguments: 'values', auditArgumentBytes: 256 })!;
    const huge = 'é'.repeat(500_000);
    write({
      ...base,
      clientRequestId: huge,
      sessionId: huge,
      client: huge,
      method: huge,
      tool: huge,
      prompt: huge,
      resource: huge,
      rpcId: huge,
      arguments: { [huge]: huge, list: [huge, huge] },
    });
    log.logger.flush();
    const [line] = log.audit();
    const cut = (bytes: number) => expect.stringMatching(new RegExp(`^é{${Math.floor(bytes / 2)}}…$`));
    expect(line).toMatchObject({
      clientRequestId: cut(AUDIT_BOUNDS.clientRequestId),
      sessionId: cut(AUDIT_BOUNDS.sessionId),
      client: cut(AUDIT_BOUNDS.client),
      method: cut(AUDIT_BOUNDS.method),
      tool: cut(AUDIT_BOUNDS.name),
      prompt: cut(AUDIT_BOUNDS.name),
      resource: cut(AUDIT_BOUNDS.resource),
      rpcId: cut(AUDIT_BOUNDS.rpcId),
    });
    expect(log.text().length).toBeLessThan(6000);
  });

  it('writes argument values nested past any depth (AUDIT_ARGUMENTS=values) without throwing: cut and marked', () => {
    const log = captureLog();
    let failures = 0;
    const write = createAuditWriter(log.logger, { audit: true, auditArguments: 'values', auditArgumentBytes: 256 }, () => failures++)!;
    // As JSON.parse gives it: 100,000 levels (JSON.stringify overflows the stack on it).
    const text = `{"deep":${'['.repeat(100_000)}${']'.repeat(100_000)},"shallow":{"a":[1,{"b":"c"}]},"wide":${JSON.stringify(Array(10_000).fill('x'))}}`;
    const args = JSON.parse(text) as Record<string, unknown>;
    expect(() => JSON.stringify(args)).toThrow(RangeError);
    write({ ...base, arguments: args, argumentsText: text });
    log.logger.flush();
    const [line] = log.audit();
    const values = line!.arguments as Record<string, unknown>;
    expect(values.deep).toBe(`${'['.repeat(MAX_VALUE_DEPTH)}…`);
    expect(values.shallow).toEqual({ a: [1, { b: 'c' }] });
    expect(values.wide).toMatch(/^\["x","x",.*…$/);
    expect(Buffer.byteLength(values.wide as string)).toBeLessThanOrEqual(256 + 3);
    expect(line).not.toHaveProperty('auditError');
    expect(failures).toBe(0);
  });

  it('writes a line it cannot write whole without its arguments, marked auditError, and counts the failure', () => {
    const log = captureLog();
    let failures = 0;
    const write = createAuditWriter(log.logger, { audit: true, auditArguments: 'names', auditArgumentBytes: 256 }, () => failures++)!;
    // No text as written, and a value JSON cannot hold: hashing its JSON throws.
    expect(() => write({ ...base, arguments: { n: 1n }, argumentsText: undefined })).not.toThrow();
    log.logger.flush();
    expect(log.audit()).toEqual([
      expect.objectContaining({ reqId: 'r-1', method: 'tools/call', tool: 'query', outcome: 'result', auditError: true }),
    ]);
    expect(log.audit()[0]).not.toHaveProperty('argumentNames');
    expect(failures).toBe(1);
  });

  it("carries the client's X-Request-Id beside the sidecar's own", () => {
    const log = captureLog();
    const write = createAuditWriter(log.logger, { audit: true, auditArguments: 'names', auditArgumentBytes: 256 })!;
    write({ ...base, clientRequestId: 'client-chose-this' });
    write(base);
    log.logger.flush();
    expect(log.audit().map((line) => [line.reqId, line.clientRequestId])).toEqual([
      ['r-1', 'client-chose-this'],
      ['r-1', undefined],
    ]);
  });

  it('hashes the arguments as written in the body when given, else their compact JSON', () => {
    const log = captureLog();
    const write = createAuditWriter(log.logger, { audit: true, auditArguments: 'names', auditArgumentBytes: 256 })!;
    const sha = (text: string) => createHash('sha256').update(text).digest('hex');
    write({ ...base, argumentsText: '{ "table" : "alpha_orders" }' });
    write(base);
    log.logger.flush();
    expect(log.audit().map((line) => line.argumentsSha256)).toEqual([sha('{ "table" : "alpha_orders" }'), sha('{"table":"alpha_orders"}')]);
  });
});
