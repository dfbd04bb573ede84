// npx tsx bench/audit-line.ts: what one audit line costs, in a loop (the logger's own buffered
// destination, writing into a sink): with a 1 KB argument object (names, SHA-256) and without.

import { BufferedOutput, createLogger } from '../src/observability/log.js';
import { createAuditWriter, type AuditLine } from '../src/mcp/audit.js';

const sink = { write: (_data: string, done?: () => void) => (done?.(), true), writableLength: 0 };
const logger = createLogger('info', new BufferedOutput(sink));
const write = createAuditWriter(logger, { audit: true, auditArguments: 'names', auditArgumentBytes: 256 })!;
const line: AuditLine = {
  reqId: '64e5b889-ce13-4bff-b706-1473b2ffea50',
  user: 'alice',
  subject: 'f0a4c2de-5b1e-4a7d-9c3b-2e8f1d6a7b90',
  binding: 'bearer',
  sessionId: '1f0e6f1c-3b7e-4d59-9a51-8f0f2f8e2b11',
  client: 'coder/2.24.1',
  protocolVersion: '2025-06-18',
  method: 'tools/call',
  tool: 'query',
  prompt: undefined,
  resource: undefined,
  arguments: { table: 'alpha_orders', sql: 'a'.repeat(900), limit: 100 },
  // As parseBody gives it with AUDIT=on: the arguments as written in the body, hashed as they are.
  argumentsText: JSON.stringify({ table: 'alpha_orders', sql: 'a'.repeat(900), limit: 100 }),
  rpcId: 7,
  outcome: 'result',
  rpcErrorCode: undefined,
  policyRule: undefined,
  durationMs: 1.234,
  bytesIn: 1000,
  bytesOut: 450,
};
const noArguments = { ...line, arguments: undefined, argumentsText: undefined };
const N = 200_000;
const measure = (what: AuditLine) => {
  for (let i = 0; i < 20_000; i++) write(what);
  const started = performance.now();
  for (let i = 0; i < N; i++) write(what);
  return ((performance.now() - started) * 1000) / N;
};
for (let round = 0; round < 3; round++) {
  console.log(
    `round ${round + 1}: ${measure(line).toFixed(2)} µs a line with 1 KB of arguments, ${measure(noArguments).toFixed(2)} µs without`,
  );
}
