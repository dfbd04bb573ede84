// The tool index: a rule with a top-level conjunct `mcp.tool == "x"` or `mcp.tool in ["x", "y"]`
// can be true only for those tools (the conjunct is a prefilter, false for any other), so a
// decision about a tool looks only at the rules that name it or name no tool.

import type { Expr } from '@bufbuild/cel-spec/cel/expr/syntax_pb.js';
import { factEqualsOneOf } from './syntax.js';

/** The tool names a conjunct `mcp.tool == "x"` / `"x" == mcp.tool` / `mcp.tool in ["x", "y"]` allows; undefined for any other. */
function toolsNamed(expr: Expr): ReadonlySet<string> | undefined {
  const test = factEqualsOneOf(expr);
  return test?.fact === 'mcp.tool' ? new Set(test.values) : undefined;
}

/** The tools an expression with these top-level conjuncts can be true for; undefined: any. */
export function toolsOf(conjuncts: readonly Expr[]): ReadonlySet<string> | undefined {
  return conjuncts.map(toolsNamed).find((t) => t !== undefined);
}

/** What the index needs of a rule. */
interface Indexed {
  readonly expression: { readonly tools: ReadonlySet<string> | undefined };
}

const MAX_CANDIDATE_LISTS = 1000;
const candidateLists = new WeakMap<readonly Indexed[], Map<string, readonly Indexed[]>>();

/** The rules that can be true for a tool name, in file order: those limited to other tools are skipped unread. */
export function candidates<R extends Indexed>(rules: readonly R[], tool: string): readonly R[] {
  let byTool = candidateLists.get(rules);
  if (byTool === undefined) candidateLists.set(rules, (byTool = new Map<string, readonly Indexed[]>()));
  let list = byTool.get(tool) as readonly R[] | undefined;
  if (list === undefined) {
    list = rules.filter((rule) => rule.expression.tools === undefined || rule.expression.tools.has(tool));
    if (byTool.size >= MAX_CANDIDATE_LISTS) byTool.clear(); // tool names are the client's choice: bounded
    byTool.set(tool, list);
  }
  return list;
}
