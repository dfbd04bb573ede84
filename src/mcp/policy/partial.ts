// Partial evaluation: an expression's truth with mcp.arguments unknown, for the list check
// ("could some call of this tool be allowed?"), since arguments come only with the call. Every
// part that reads mcp.arguments is `unknown`; the rest is evaluated plainly and combined by
// three-valued logic over &&, ||, ! and ?:. A definite answer holds for any arguments, except
// that one may turn into `error` (a `?:` whose condition reads them); `unknown` promises nothing.

import type { Expr } from '@bufbuild/cel-spec/cel/expr/syntax_pb.js';
import { planned, toTruth, type Evaluate, type Facts, type Truth } from './cel.js';

type Node =
  | { readonly kind: 'and' | 'or'; readonly a: Node; readonly b: Node }
  | { readonly kind: 'not'; readonly a: Node }
  | { readonly kind: 'cond'; readonly c: Node; readonly a: Node; readonly b: Node }
  | { readonly kind: 'atom'; readonly evaluate: Evaluate | undefined /* undefined: reads mcp.arguments */ };

function readsArguments(expr: Expr | undefined): boolean {
  if (expr === undefined) return false;
  const kind = expr.exprKind;
  switch (kind.case) {
    case 'selectExpr': {
      const operand = kind.value.operand;
      if (operand?.exprKind.case === 'identExpr' && operand.exprKind.value.name === 'mcp' && kind.value.field === 'arguments') return true;
      return readsArguments(operand);
    }
    case 'callExpr':
      return readsArguments(kind.value.target) || kind.value.args.some(readsArguments);
    case 'listExpr':
      return kind.value.elements.some(readsArguments);
    case 'structExpr':
      return kind.value.entries.some((e) => readsArguments(e.value) || (e.keyKind.case === 'mapKey' && readsArguments(e.keyKind.value)));
    case 'comprehensionExpr': {
      const c = kind.value;
      return [c.iterRange, c.accuInit, c.loopCondition, c.loopStep, c.result].some(readsArguments);
    }
    default:
      return false;
  }
}

function skeleton(expr: Expr): Node {
  if (expr.exprKind.case === 'callExpr' && expr.exprKind.value.target === undefined) {
    const { function: name, args } = expr.exprKind.value;
    if ((name === '_&&_' || name === '_||_') && args.length >= 2) {
      const kind = name === '_&&_' ? 'and' : 'or';
      return args.slice(1).reduce<Node>((a, arg) => ({ kind, a, b: skeleton(arg) }), skeleton(args[0]!));
    }
    if (name === '!_' && args.length === 1) return { kind: 'not', a: skeleton(args[0]!) };
    if (name === '_?_:_' && args.length === 3) return { kind: 'cond', c: skeleton(args[0]!), a: skeleton(args[1]!), b: skeleton(args[2]!) };
  }
  return { kind: 'atom', evaluate: readsArguments(expr) ? undefined : planned(expr) };
}

function evaluateNode(node: Node, facts: Facts): Truth {
  switch (node.kind) {
    case 'atom':
      return node.evaluate === undefined ? 'unknown' : toTruth(node.evaluate(facts));
    case 'not': {
      const a = evaluateNode(node.a, facts);
      return typeof a === 'boolean' ? !a : a;
    }
    case 'and':
    case 'or': {
      // CEL's commutative logic: the deciding value wins over errors; unknowns win over errors.
      const decisive = node.kind === 'or';
      const a = evaluateNode(node.a, facts);
      if (a === decisive) return decisive;
      const b = evaluateNode(node.b, facts);
      if (b === decisive) return decisive;
      if (a === 'unknown' || b === 'unknown') return 'unknown';
      if (a === 'error' || b === 'error') return 'error';
      return !decisive;
    }
    case 'cond': {
      const c = evaluateNode(node.c, facts);
      if (c === true) return evaluateNode(node.a, facts);
      if (c === false) return evaluateNode(node.b, facts);
      if (c === 'error') return 'error';
      const a = evaluateNode(node.a, facts);
      return a === evaluateNode(node.b, facts) ? a : 'unknown';
    }
  }
}

/** The truth of `a && b && …` over the given conjuncts with mcp.arguments unknown (none: true). */
export function partialEvaluation(conjuncts: readonly Expr[]): (facts: Facts) => Truth {
  const tree = conjuncts.map(skeleton).reduce<Node | undefined>((a, b) => (a === undefined ? b : { kind: 'and', a, b }), undefined);
  return (facts) => (tree === undefined ? true : evaluateNode(tree, facts));
}
