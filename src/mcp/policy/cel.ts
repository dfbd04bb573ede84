// Plain evaluation: a (sub)expression planned once by @bufbuild/cel and run on a message's facts.
// It is the reference: every shortcut in this folder (prefilter.ts, string-test.ts, partial.ts,
// tool-index.ts) must give what it gives (test/unit/policy-differential.test.ts checks them).

import { celEnv, isCelError, plan } from '@bufbuild/cel';
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
  /**
   * The token: the issuer that vouched for it, its scopes (`scope`, split at spaces), and its
   * confirmation (`cnf`: `{jkt}` for a DPoP-bound token whose proof was checked, else empty).
   */
  readonly token: { readonly iss: string; readonly scopes: readonly string[]; readonly cnf?: Readonly<Record<string, string>> };
}

/** A CEL value of three-valued logic: `unknown` = depends on the call's arguments; `error` = evaluation failed. */
export type Truth = boolean | 'unknown' | 'error';

/** A value of a (sub)expression; `'error'` when CEL's evaluation failed. */
export type Evaluate = (facts: Facts) => unknown;

// The standard library: functions and macros; variables are bound by the activation, not declared.
export const env = celEnv();

/** A rule's value as a truth: anything but a bool is `error`, as CEL's && and ! treat it. */
export const toTruth = (value: unknown): Truth => (typeof value === 'boolean' ? value : 'error');

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
        ['cnf', new Map(Object.entries(facts.token.cnf ?? {}))],
      ]),
    };
    activations.set(facts, activation);
  }
  return activation;
}

/** The expression planned by @bufbuild/cel: its value for a message's facts, `'error'` for a CEL error. */
export function planned(expr: Expr): Evaluate {
  const run = plan(env, expr) as (activation: unknown) => unknown;
  return (facts) => {
    const value = run(activationOf(facts));
    return isCelError(value) ? 'error' : value;
  };
}
