// Reading a parsed expression: the fact names, constants and top-level conjuncts that the type
// check and the shortcuts (prefilter, string test, tool index) recognise.

import type { Expr } from '@bufbuild/cel-spec/cel/expr/syntax_pb.js';

export const MCP_FIELDS = ['method', 'tool', 'arguments', 'prompt', 'resource'] as const;
/** Facts that are always a string (bound as "" when absent). */
export const STRING_FACTS: ReadonlySet<string> = new Set(['user', 'mcp.method', 'mcp.tool', 'mcp.prompt', 'mcp.resource', 'token.iss']);
/** Facts that are always a list of strings (bound as [] when absent). */
export const LIST_FACTS: ReadonlySet<string> = new Set(['groups', 'roles', 'token.scopes']);
export const TOP_LEVEL: ReadonlySet<string> = new Set(['jwt', 'user', 'groups', 'roles', 'mcp', 'tool', 'token']);
export const TOKEN_FIELDS = ['iss', 'scopes', 'cnf'] as const;

/** `user`, `mcp.tool`: the name an identifier or a one-level select of one spells; undefined for anything else. */
export function factName(expr: Expr | undefined): string | undefined {
  if (expr?.exprKind.case === 'identExpr') return expr.exprKind.value.name;
  if (expr?.exprKind.case === 'selectExpr' && !expr.exprKind.value.testOnly) {
    const operand = expr.exprKind.value.operand;
    if (operand?.exprKind.case === 'identExpr') return `${operand.exprKind.value.name}.${expr.exprKind.value.field}`;
  }
  return undefined;
}

export function constant(expr: Expr | undefined): { kind: string; value: unknown } | undefined {
  if (expr?.exprKind.case !== 'constExpr') return undefined;
  const kind = expr.exprKind.value.constantKind;
  return { kind: kind.case ?? 'null', value: kind.value };
}

/**
 * A fact compared with string constants: `fact == "x"`, `"x" == fact` or `fact in ["x", "y"]`:
 * the fact's name and the strings it may equal; undefined for any other form.
 */
export function factEqualsOneOf(expr: Expr): { fact: string; values: readonly string[] } | undefined {
  if (expr.exprKind.case !== 'callExpr' || expr.exprKind.value.target !== undefined) return undefined;
  const { function: name, args } = expr.exprKind.value;
  if (args.length !== 2) return undefined;
  if (name === '_==_') {
    for (const [side, other] of [
      [args[0], args[1]],
      [args[1], args[0]],
    ] as const) {
      const fact = factName(side);
      const c = constant(other);
      if (fact !== undefined && c?.kind === 'stringValue') return { fact, values: [c.value as string] };
    }
  }
  const [side, list] = args;
  if (name === '@in' && list?.exprKind.case === 'listExpr') {
    const fact = factName(side);
    const values = list.exprKind.value.elements.map(constant);
    if (fact !== undefined && values.every((c) => c?.kind === 'stringValue'))
      return { fact, values: values.map((c) => c!.value as string) };
  }
  return undefined;
}

/** A constant's kind as CEL names its type, for messages. */
export const CONSTANT_TYPE: Readonly<Record<string, string>> = {
  stringValue: 'string',
  int64Value: 'int',
  uint64Value: 'uint',
  doubleValue: 'double',
  boolValue: 'bool',
  nullValue: 'null',
  bytesValue: 'bytes',
};

/** The operands of the top-level && (the expression itself when it is no &&). */
export function conjuncts(expr: Expr): Expr[] {
  if (expr.exprKind.case === 'callExpr' && expr.exprKind.value.function === '_&&_' && expr.exprKind.value.target === undefined) {
    return expr.exprKind.value.args.flatMap(conjuncts);
  }
  return [expr];
}
