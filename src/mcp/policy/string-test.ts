// String tests on one argument (`mcp.arguments.NAME.startsWith("x")`, endsWith, contains), the
// commonest argument condition, run in JS with CEL's result: the evaluator would first turn the
// arguments into a Map and dispatch by overload, most of such a decision's cost (bench/RESULTS.md,
// bench:policy). @bufbuild/cel runs these very String.prototype methods.

import type { Expr } from '@bufbuild/cel-spec/cel/expr/syntax_pb.js';
import type { Evaluate } from './cel.js';
import { constant, factName } from './syntax.js';

const STRING_TESTS: Record<string, (value: string, operand: string) => boolean> = {
  startsWith: (value, operand) => value.startsWith(operand),
  endsWith: (value, operand) => value.endsWith(operand),
  contains: (value, operand) => value.includes(operand),
};

/** The conjunct as a string test: CEL's value, `'error'` where the argument is missing or not a string; undefined when it is no string test. */
export function stringTestOf(expr: Expr): Evaluate | undefined {
  if (expr.exprKind.case !== 'callExpr') return undefined;
  const { function: name, target, args } = expr.exprKind.value;
  const test = Object.hasOwn(STRING_TESTS, name) ? STRING_TESTS[name]! : undefined;
  const operand = constant(args[0]);
  if (test === undefined || args.length !== 1 || operand?.kind !== 'stringValue') return undefined;
  if (
    target?.exprKind.case !== 'selectExpr' ||
    target.exprKind.value.testOnly ||
    factName(target.exprKind.value.operand) !== 'mcp.arguments'
  )
    return undefined;
  const argument = target.exprKind.value.field;
  const text = operand.value as string;
  return (facts) => {
    const args = facts.mcp.arguments;
    // CEL: a missing key is an error ("no such key"), and these functions take only strings.
    const value = Object.hasOwn(args, argument) ? args[argument] : undefined;
    return typeof value === 'string' ? test(value, text) : 'error';
  };
}
