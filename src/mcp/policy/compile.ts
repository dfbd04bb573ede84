// One rule's `when`: a CEL expression parsed, type-checked and planned once per policy version,
// then evaluated per message. The jobs, one module each, in this folder's words:
//   cel.ts         facts (what a rule sees), truth, and plain evaluation by @bufbuild/cel
//   syntax.ts      reading the parsed tree: fact names, constants, top-level conjuncts
//   typecheck.ts   the load-time check of names, fields, functions and literal types
//   prefilter.ts   conjuncts about always-bound facts, decided in JS
//   string-test.ts startsWith/endsWith/contains of a constant on one argument, decided in JS
//   partial.ts     partial evaluation: the truth with mcp.arguments unknown (the list check)
//   tool-index.ts  the tools a rule can be true for, and the rules a tool's decision reads
// Every shortcut gives plain evaluation's answer: test/unit/policy-differential.test.ts.

import { parse } from '@bufbuild/cel';
import { planned, toTruth, type Facts, type Truth } from './cel.js';
import { partialEvaluation } from './partial.js';
import { prefilterOf } from './prefilter.js';
import { stringTestOf } from './string-test.js';
import { conjuncts } from './syntax.js';
import { toolsOf } from './tool-index.js';
import { ExpressionError, typecheck } from './typecheck.js';

export interface CompiledExpression {
  /** The expression's value, CEL's semantics; an error or a non-bool is `error`. */
  evaluate(facts: Facts): Truth;
  /** The same with mcp.arguments unknown: `unknown` when the answer depends on them. */
  evaluateWithoutArguments(facts: Facts): Truth;
  /** The tools the expression can be true for (a top-level `mcp.tool == "x"` or `mcp.tool in [...]`); undefined: any. */
  readonly tools: ReadonlySet<string> | undefined;
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
  typecheck(parsed.expr, positions);

  // The conjuncts JS decides exactly are left out of CEL; the rest are planned one by one and
  // combined as CEL's && does (false wins over errors, errors over true).
  const all = conjuncts(parsed.expr);
  const parts = all.map((expr) => ({ expr, prefilter: prefilterOf(expr) }));
  const prefilters = parts.flatMap((p) => (p.prefilter === undefined ? [] : [p.prefilter]));
  const rest = parts.filter((p) => p.prefilter === undefined).map((p) => p.expr);
  const residual = rest.map((expr) => stringTestOf(expr) ?? planned(expr));
  const withoutArguments = partialEvaluation(rest);
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
    evaluateWithoutArguments: (facts) => (excluded(facts) ? false : withoutArguments(facts)),
    tools: toolsOf(all),
  };
}
