// npm run bench:policy: one tool policy decision (PolicyGuard.judge) with 50 rules, in this
// process: 47 allow rules of a group and a tool each, two argument rules (a string test, which
// runs in JS, and a number comparison, which the CEL evaluator runs), one deny rule; calls that
// the last allow rules decide, calls no rule allows (every rule looked at), and a tools/list of
// 50 tools filtered. Microseconds per call, best of five passes. Goal: under 10 µs.

import { parsePolicy } from '../src/mcp/policy/file.js';
import { PolicyGuard } from '../src/mcp/policy/guard.js';
import type { Caller, ClientMessage } from '../src/mcp/guard.js';

const rules = [
  ...Array.from(
    { length: 47 },
    (_, i) =>
      `  - name: group-${i}-calls-tool-${i}\n    effect: allow\n    when: '"/group-${i}" in groups && mcp.method == "tools/call" && mcp.tool == "tool_${i}"'`,
  ),
  '  - name: alpha-queries-alpha-tables\n    effect: allow\n    when: \'"/alpha" in groups && mcp.tool == "query" && mcp.arguments.table.startsWith("alpha_")\'',
  '  - name: alpha-counts-a-little\n    effect: allow\n    when: \'"/alpha" in groups && mcp.tool == "count" && mcp.arguments.limit <= 100\'',
  '  - name: nobody-drops\n    effect: deny\n    when: mcp.tool == "drop_table"',
];
const policy = parsePolicy(`rules:\n${rules.join('\n')}\n`);
const guard = new PolicyGuard(policy.rules!, { mode: 'enforce' });
const caller: Caller = {
  identity: {
    user: 'alice',
    subject: 'u-alice',
    email: undefined,
    groups: ['/alpha', '/group-46'],
    roles: ['reader'],
    claims: { preferred_username: 'alice', groups: ['/alpha', '/group-46'] },
  },
  sessionId: undefined,
};
const message = (tool: string, args?: Record<string, unknown>): ClientMessage => ({
  method: 'tools/call',
  id: 1,
  params: { name: tool, arguments: args },
  tool,
  prompt: undefined,
  resource: undefined,
  arguments: args,
});
const cases: [string, ClientMessage][] = [
  ['allowed by the string argument rule (48th, JS)', message('query', { table: 'alpha_orders' })],
  ['allowed by the number argument rule (49th, CEL)', message('count', { limit: 10 })],
  ['allowed by the 47th group rule', message('tool_46')],
  ['denied: no rule allows (all 50 looked at)', message('tool_3')],
  ['denied by the deny rule', message('drop_table')],
];
const list = {
  tools: Array.from({ length: 50 }, (_, i) => ({
    name: i < 47 ? `tool_${i}` : ['query', 'count', 'drop_table'][i - 47]!,
    inputSchema: {},
  })),
};
const listMessage: ClientMessage = {
  method: 'tools/list',
  id: 2,
  params: {},
  tool: undefined,
  prompt: undefined,
  resource: undefined,
  arguments: undefined,
};

function measure(what: string, run: () => void, n: number): void {
  for (let i = 0; i < n; i++) run(); // warm-up
  let best = Infinity;
  for (let pass = 0; pass < 5; pass++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) run();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / n / 1000);
  }
  console.log(`${what.padEnd(48)} ${best.toFixed(2).padStart(8)} µs`);
}

console.log(`Node ${process.versions.node}, ${policy.rules!.length} rules`);
for (const [what, m] of cases) measure(what, () => guard.judge(m, caller), 50_000);
measure('tools/list of 50 tools filtered (per list)', () => guard.rewriteResult(listMessage, list, caller), 2_000);
