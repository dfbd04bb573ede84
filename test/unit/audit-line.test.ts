import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createAuditWriter, type AuditLine } from '../../src/mcp/audit.js';
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
        sessionId: value,
        client: value,
        protocolVersion: value,
        method: value,
        tool: value,
        policyRule: value,
        rpcId: value,
      });
      // Names over 128 characters are cut and marked.
      expect(line.argumentNames).toEqual([value.length > 128 ? `${value.slice(0, 128)}…` : value, 'other']);
    });
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
