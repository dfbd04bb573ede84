// The load-time check of an expression against the facts rules see: names, fields, functions,
// and a string fact compared with a non-string literal (always false in CEL). @bufbuild/cel 0.6
// has no public type checker yet, so these are the checks one would make for our variables,
// run once per policy version so that a typo fails the load instead of every call.

import type { Expr } from '@bufbuild/cel-spec/cel/expr/syntax_pb.js';
import { env } from './cel.js';
import { CONSTANT_TYPE, LIST_FACTS, MCP_FIELDS, STRING_FACTS, TOKEN_FIELDS, TOP_LEVEL, constant, factName } from './syntax.js';

/** A problem with an expression at an offset into its text. */
export class ExpressionError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
    this.name = 'ExpressionError';
  }
}

/** Throws ExpressionError at the first problem; `positions` maps node ids to offsets (the parser's source info). */
export function typecheck(root: Expr, positions: Readonly<Record<string, number>>): void {
  const at = (expr: Expr) => positions[String(expr.id)] ?? 0;
  const walk = (expr: Expr | undefined, bound: ReadonlySet<string>): void => {
    if (expr === undefined) return;
    const kind = expr.exprKind;
    switch (kind.case) {
      case 'identExpr': {
        const name = kind.value.name;
        if (bound.has(name)) return;
        if (name === 'mcp' || name === 'tool' || name === 'token') {
          const fields = { mcp: MCP_FIELDS, tool: ['annotations'], token: TOKEN_FIELDS }[name];
          throw new ExpressionError(`${name} is not a value on its own: use ${fields.map((f) => `${name}.${f}`).join(', ')}`, at(expr));
        }
        if (!TOP_LEVEL.has(name))
          throw new ExpressionError(
            `undeclared name ${name}: rules see jwt, user, groups, roles, mcp.*, tool.annotations, token.iss, token.scopes, token.cnf`,
            at(expr),
          );
        return;
      }
      case 'selectExpr': {
        const operand = kind.value.operand;
        if (operand?.exprKind.case === 'identExpr' && !bound.has(operand.exprKind.value.name)) {
          const base = operand.exprKind.value.name;
          const field = kind.value.field;
          if (base === 'mcp' && !(MCP_FIELDS as readonly string[]).includes(field)) {
            throw new ExpressionError(`mcp has no field ${field}: it has ${MCP_FIELDS.join(', ')}`, at(expr));
          }
          if (base === 'tool' && field !== 'annotations')
            throw new ExpressionError(`tool has no field ${field}: it has annotations`, at(expr));
          if (base === 'token' && !(TOKEN_FIELDS as readonly string[]).includes(field)) {
            throw new ExpressionError(`token has no field ${field}: it has ${TOKEN_FIELDS.join(', ')}`, at(expr));
          }
          if (base === 'mcp' || base === 'tool' || base === 'token') return;
        }
        walk(operand, bound);
        return;
      }
      case 'callExpr': {
        const call = kind.value;
        const name = call.function;
        if (!/^[_@!]/.test(name) && env.funcs.find(name) === undefined) throw new ExpressionError(`unknown function ${name}`, at(expr));
        if (name === '_==_' || name === '_!=_') {
          for (const [fact, other] of [
            [call.args[0], call.args[1]],
            [call.args[1], call.args[0]],
          ] as const) {
            const c = constant(other);
            const f = factName(fact);
            if (f !== undefined && STRING_FACTS.has(f) && c !== undefined && c.kind !== 'stringValue') {
              throw new ExpressionError(`${f} is a string, compared with ${CONSTANT_TYPE[c.kind] ?? c.kind} ${String(c.value)}`, at(expr));
            }
          }
        }
        if (name === '@in') {
          const f = factName(call.args[0]);
          const list = call.args[1];
          if (f !== undefined && STRING_FACTS.has(f) && list?.exprKind.case === 'listExpr') {
            for (const element of list.exprKind.value.elements) {
              const c = constant(element);
              if (c !== undefined && c.kind !== 'stringValue')
                throw new ExpressionError(`${f} is a string, looked up among ${CONSTANT_TYPE[c.kind] ?? c.kind} values`, at(element));
            }
          }
          const container = factName(list);
          const c = constant(call.args[0]);
          if (container !== undefined && LIST_FACTS.has(container) && c !== undefined && c.kind !== 'stringValue') {
            throw new ExpressionError(
              `${container} is a list of strings, looked up with ${CONSTANT_TYPE[c.kind] ?? c.kind} ${String(c.value)}`,
              at(expr),
            );
          }
        }
        walk(call.target, bound);
        for (const arg of call.args) walk(arg, bound);
        return;
      }
      case 'listExpr':
        for (const element of kind.value.elements) walk(element, bound);
        return;
      case 'structExpr':
        for (const entry of kind.value.entries) {
          if (entry.keyKind.case === 'mapKey') walk(entry.keyKind.value, bound);
          walk(entry.value, bound);
        }
        if (kind.value.messageName !== '')
          throw new ExpressionError(`message types are not available: ${kind.value.messageName}`, at(expr));
        return;
      case 'comprehensionExpr': {
        const c = kind.value;
        walk(c.iterRange, bound);
        walk(c.accuInit, bound);
        const inner = new Set(bound);
        for (const name of [c.iterVar, c.iterVar2, c.accuVar]) if (name) inner.add(name);
        walk(c.loopCondition, inner);
        walk(c.loopStep, inner);
        walk(c.result, inner);
        return;
      }
      default:
        return;
    }
  };
  walk(root, new Set());
  const c = constant(root);
  if (c !== undefined && c.kind !== 'boolValue')
    throw new ExpressionError(`a rule must be true or false, not ${CONSTANT_TYPE[c.kind] ?? c.kind}`, 0);
}
