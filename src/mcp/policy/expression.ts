// One rule's `when`: a CEL expression parsed, checked and planned once per policy version
// (@bufbuild/cel), then evaluated per message. Besides the plain evaluation it offers the list
// check, "could some call be allowed?", which treats every part that reads mcp.arguments as
// unknown (three-valued logic over &&, ||, !, ?:), because arguments come only with the call.

import { celEnv, isCelError, parse, plan } from '@bufbuild/cel';
import type { Expr } from '@bufbuild/cel-spec/cel/expr/syntax_pb.js';

/** What a rule sees. Every name is always bound (an absent one as "", [] or {}), so a rule about tools cannot fail on `initialize`. */
export interface Facts {
  readonly jwt: Readonly<Record<string, unknown>>;
  readonly user: string;
  readonly groups: readonly string[];
  readonly roles: readonly string[];
  readonly mcp: {
    readonly method: string;
    readonly tool: string;
    readonly arguments: Readonly<Record<string, unknown>>;
    readonly prompt: string;
    readonly resource: string;
  };
  readonly tool: { readonly annotations: Readonly<Record<string, unknown>> };
  /** The token: the issuer that vouched for it, and its scopes (`scope`, split at spaces). */
  readonly token: { readonly iss: string; readonly scopes: readonly string[] };
}

export const MCP_FIELDS = ['method', 'tool', 'arguments', 'prompt', 'resource'] as const;
export const TOKEN_FIELDS = ['iss', 'scopes'] as const;
const STRING_FACTS = new Set(['user', 'mcp.method', 'mcp.tool', 'mcp.prompt', 'mcp.resource', 'token.iss']);
const LIST_FACTS = new Set(['groups', 'roles', 'token.scopes']);
const TOP_LEVEL = new Set(['jwt', 'user', 'groups', 'roles', 'mcp', 'tool', 'token']);

/** A CEL value of three-valued logic: `unknown` = depends on the call's arguments; `error` = evaluation failed. */
export type Truth = boolean | 'unknown' | 'error';

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

// The standard library: functions and macros; variables are bound by the activation, not declared.
const env = celEnv();

type Evaluate = (facts: Facts) => unknown;
type Node =
  | { readonly kind: 'and' | 'or'; readonly a: Node; readonly b: Node }
  | { readonly kind: 'not'; readonly a: Node }
  | { readonly kind: 'cond'; readonly c: Node; readonly a: Node; readonly b: Node }
  | { readonly kind: 'atom'; readonly evaluate: Evaluate | undefined /* undefined: reads mcp.arguments */ };

/** A conjunct at the top of a rule that plain JS can decide (`mcp.tool == "x"`, `"/a" in groups`): false skips CEL. */
type Prefilter = (facts: Facts) => boolean;

export interface CompiledExpression {
  /** The expression's value, CEL's semantics; an error or a non-bool is `error`. */
  evaluate(facts: Facts): Truth;
  /** The same with mcp.arguments unknown: `unknown` when the answer depends on them. */
  evaluateWithoutArguments(facts: Facts): Truth;
  /** The tools the expression can be true for (a top-level `mcp.tool == "x"` or `mcp.tool in [...]`); undefined: any. */
  readonly tools: ReadonlySet<string> | undefined;
}

function factName(expr: Expr | undefined): string | undefined {
  if (expr?.exprKind.case === 'identExpr') return expr.exprKind.value.name;
  if (expr?.exprKind.case === 'selectExpr' && !expr.exprKind.value.testOnly) {
    const operand = expr.exprKind.value.operand;
    if (operand?.exprKind.case === 'identExpr') return `${operand.exprKind.value.name}.${expr.exprKind.value.field}`;
  }
  return undefined;
}

function constant(expr: Expr | undefined): { kind: string; value: unknown } | undefined {
  if (expr?.exprKind.case !== 'constExpr') return undefined;
  const kind = expr.exprKind.value.constantKind;
  return { kind: kind.case ?? 'null', value: kind.value };
}

const CONSTANT_TYPE: Record<string, string> = {
  stringValue: 'string',
  int64Value: 'int',
  uint64Value: 'uint',
  doubleValue: 'double',
  boolValue: 'bool',
  nullValue: 'null',
  bytesValue: 'bytes',
};

/**
 * The checks CEL's type checker would make for our declared variables: names, fields, functions,
 * and a string fact compared with a non-string literal (always false in CEL). @bufbuild/cel 0.6
 * has no public checker yet, so these run here, at load.
 */
function checkNames(root: Expr, positions: Record<string, number>): void {
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
            `undeclared name ${name}: rules see jwt, user, groups, roles, mcp.*, tool.annotations, token.iss, token.scopes`,
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

const toTruth = (value: unknown): Truth => (typeof value === 'boolean' ? value : 'error');

// The evaluator converts a plain object on every access, Maps more cheaply: the objects rules
// read are handed over as Maps, built once per message.
const activations = new WeakMap<Facts, Record<string, unknown>>();
function activationOf(facts: Facts): Record<string, unknown> {
  let activation = activations.get(facts);
  if (activation === undefined) {
    activation = {
      jwt: facts.jwt,
      user: facts.user,
      groups: facts.groups,
      roles: facts.roles,
      mcp: new Map<string, unknown>([
        ['method', facts.mcp.method],
        ['tool', facts.mcp.tool],
        ['arguments', new Map(Object.entries(facts.mcp.arguments))],
        ['prompt', facts.mcp.prompt],
        ['resource', facts.mcp.resource],
      ]),
      tool: new Map([['annotations', facts.tool.annotations]]),
      token: new Map<string, unknown>([
        ['iss', facts.token.iss],
        ['scopes', facts.token.scopes],
      ]),
    };
    activations.set(facts, activation);
  }
  return activation;
}

function planned(expr: Expr): Evaluate {
  const run = plan(env, expr) as (activation: unknown) => unknown;
  return (facts) => {
    const value = run(activationOf(facts));
    return isCelError(value) ? 'error' : value;
  };
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

/** `mcp.tool == "x"`, `mcp.method in ["a", "b"]`, `"/alpha" in groups`: decided in JS, they are always bound with their type. */
function prefilterOf(expr: Expr): Prefilter | undefined {
  if (expr.exprKind.case !== 'callExpr' || expr.exprKind.value.target !== undefined) return undefined;
  const { function: name, args } = expr.exprKind.value;
  const read = (fact: string): ((facts: Facts) => unknown) => {
    if (fact === 'user') return (f) => f.user;
    if (fact === 'groups') return (f) => f.groups;
    if (fact === 'roles') return (f) => f.roles;
    if (fact === 'token.iss') return (f) => f.token.iss;
    if (fact === 'token.scopes') return (f) => f.token.scopes;
    const field = fact.slice('mcp.'.length) as 'method' | 'tool' | 'prompt' | 'resource';
    return (f) => f.mcp[field];
  };
  if (name === '_==_' && args.length === 2) {
    for (const [fact, other] of [
      [args[0], args[1]],
      [args[1], args[0]],
    ] as const) {
      const f = factName(fact);
      const c = constant(other);
      if (f !== undefined && STRING_FACTS.has(f) && c?.kind === 'stringValue') {
        const get = read(f);
        const value = c.value as string;
        return (facts) => get(facts) === value;
      }
    }
  }
  if (name === '@in' && args.length === 2) {
    const f = factName(args[0]);
    const list = args[1];
    if (f !== undefined && STRING_FACTS.has(f) && list?.exprKind.case === 'listExpr') {
      const values = list.exprKind.value.elements.map(constant);
      if (values.every((c) => c?.kind === 'stringValue')) {
        const set = new Set(values.map((c) => c!.value as string));
        const get = read(f);
        return (facts) => set.has(get(facts) as string);
      }
    }
    const container = factName(list);
    const c = constant(args[0]);
    if (container !== undefined && LIST_FACTS.has(container) && c?.kind === 'stringValue') {
      const get = read(container);
      const value = c.value as string;
      return (facts) => (get(facts) as readonly string[]).includes(value);
    }
  }
  return undefined;
}

// String tests on one argument, the commonest argument condition, are run in JS with CEL's
// result: the evaluator would first turn the arguments into a Map and dispatch by overload, about
// 3 µs of a 4 µs decision (bench:policy). @bufbuild/cel runs these very String.prototype methods.
const STRING_TESTS: Record<string, (value: string, operand: string) => boolean> = {
  startsWith: (value, operand) => value.startsWith(operand),
  endsWith: (value, operand) => value.endsWith(operand),
  contains: (value, operand) => value.includes(operand),
};

/** `mcp.arguments.NAME.startsWith("x")` (or endsWith, contains): CEL's value, `error` where the argument is missing or not a string. */
function argumentStringTest(expr: Expr): Evaluate | undefined {
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

/** The tool names a conjunct `mcp.tool == "x"` / `"x" == mcp.tool` / `mcp.tool in ["x", "y"]` allows. */
function toolsNamed(expr: Expr): ReadonlySet<string> | undefined {
  if (expr.exprKind.case !== 'callExpr' || expr.exprKind.value.target !== undefined) return undefined;
  const { function: name, args } = expr.exprKind.value;
  if (name === '_==_' && args.length === 2) {
    for (const [fact, other] of [
      [args[0], args[1]],
      [args[1], args[0]],
    ] as const) {
      const c = constant(other);
      if (factName(fact) === 'mcp.tool' && c?.kind === 'stringValue') return new Set([c.value as string]);
    }
  }
  if (name === '@in' && args.length === 2 && factName(args[0]) === 'mcp.tool' && args[1]?.exprKind.case === 'listExpr') {
    const values = args[1].exprKind.value.elements.map(constant);
    if (values.every((c) => c?.kind === 'stringValue')) return new Set(values.map((c) => c!.value as string));
  }
  return undefined;
}

function conjuncts(expr: Expr): Expr[] {
  if (expr.exprKind.case === 'callExpr' && expr.exprKind.value.function === '_&&_' && expr.exprKind.value.target === undefined) {
    return expr.exprKind.value.args.flatMap(conjuncts);
  }
  return [expr];
}

/** Parses, checks and plans one expression; throws ExpressionError with the offset of the problem. */
export function compileExpression(source: string): CompiledExpression {
  let parsed;
  try {
    parsed = parse(source);
  } catch (error) {
    const e = error as { rawMessage?: string; message: string; location?: { start?: { offset?: number } } };
    throw new ExpressionError(`syntax error: ${e.rawMessage ?? e.message}`, e.location?.start?.offset ?? 0);
  }
  const positions = (parsed.sourceInfo?.positions ?? {}) as Record<string, number>;
  checkNames(parsed.expr, positions);

  // The conjuncts JS decides exactly are left out of CEL; the rest are planned one by one and
  // combined as CEL's && does (false wins over errors, errors over true).
  const parts = conjuncts(parsed.expr).map((expr) => ({ expr, prefilter: prefilterOf(expr) }));
  const tools = conjuncts(parsed.expr)
    .map(toolsNamed)
    .find((t) => t !== undefined);
  const prefilters = parts.flatMap((p) => (p.prefilter === undefined ? [] : [p.prefilter]));
  const rest = parts.filter((p) => p.prefilter === undefined).map((p) => p.expr);
  const residual = rest.map((expr) => argumentStringTest(expr) ?? planned(expr));
  const tree = rest.map(skeleton).reduce<Node | undefined>((a, b) => (a === undefined ? b : { kind: 'and', a, b }), undefined);
  const excluded = (facts: Facts) => {
    for (const passes of prefilters) if (!passes(facts)) return true;
    return false;
  };
  return {
    evaluate(facts) {
      if (excluded(facts)) return false;
      let truth: Truth = true;
      for (const evaluate of residual) {
        const value = toTruth(evaluate(facts));
        if (value === false) return false;
        if (value === 'error') truth = 'error';
      }
      return truth;
    },
    evaluateWithoutArguments: (facts) => (excluded(facts) ? false : tree === undefined ? true : evaluateNode(tree, facts)),
    tools,
  };
}
