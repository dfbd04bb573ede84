// Prefilters: a top-level conjunct comparing a fact with constants (`mcp.tool == "x"`,
// `mcp.method in ["a", "b"]`, `"/alpha" in groups`) is decided in JS and left out of CEL. It is
// exact because those facts are always bound with their type, so the conjunct is never an error;
// when it is false the whole && is false, whatever the rest would give.

import type { Expr } from '@bufbuild/cel-spec/cel/expr/syntax_pb.js';
import type { Facts } from './cel.js';
import { LIST_FACTS, STRING_FACTS, constant, factEqualsOneOf, factName } from './syntax.js';

/** A conjunct's truth, decided in JS: false excludes the message. */
export type Prefilter = (facts: Facts) => boolean;

function reader(fact: string): (facts: Facts) => unknown {
  if (fact === 'user') return (f) => f.user;
  if (fact === 'groups') return (f) => f.groups;
  if (fact === 'roles') return (f) => f.roles;
  if (fact === 'token.iss') return (f) => f.token.iss;
  if (fact === 'token.scopes') return (f) => f.token.scopes;
  const field = fact.slice('mcp.'.length) as 'method' | 'tool' | 'prompt' | 'resource';
  return (f) => f.mcp[field];
}

/** The conjunct as a prefilter, or undefined when it is not one of the forms above. */
export function prefilterOf(expr: Expr): Prefilter | undefined {
  const test = factEqualsOneOf(expr);
  if (test !== undefined) {
    if (!STRING_FACTS.has(test.fact)) return undefined;
    const get = reader(test.fact);
    if (test.values.length === 1) {
      const value = test.values[0];
      return (facts) => get(facts) === value;
    }
    const set = new Set(test.values);
    return (facts) => set.has(get(facts) as string);
  }
  if (expr.exprKind.case !== 'callExpr' || expr.exprKind.value.target !== undefined) return undefined;
  const { function: name, args } = expr.exprKind.value;
  if (name !== '@in' || args.length !== 2) return undefined;
  // `"x" in groups`: a constant in a list fact.
  const container = factName(args[1]);
  const c = constant(args[0]);
  if (container !== undefined && LIST_FACTS.has(container) && c?.kind === 'stringValue') {
    const get = reader(container);
    const value = c.value as string;
    return (facts) => (get(facts) as readonly string[]).includes(value);
  }
  return undefined;
}
