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
