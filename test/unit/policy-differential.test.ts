// Every shortcut of the tool policy against plain @bufbuild/cel, over generated policies (allow
// and deny rules on methods, tools, users, groups, roles, claims, annotations and arguments,
// combined with &&, ||, ! and ?:), generated identities and generated MCP messages (read by the
// real body parser). Plain evaluation is the whole expression planned by @bufbuild/cel and run
// on the facts as plain objects: no prefilter, no string test, no partial evaluation, no tool
// index and none of our Maps. What is shown:
// - evaluate, every prefilter and every string test give plain evaluation's truth, errors included,
//   and a rule the tool index leaves out for a tool is false for it;
// - partial evaluation: a definite answer holds for every generated set of arguments (exactly, or
//   also as an error where a ?: condition reads them), equals plain evaluation for rules without
//   argument conditions, and is exact for read-once expressions ("can match" has a witness);
// - decide() with the shortcuts gives the judgement plain evaluation gives; an item visible()
//   hides has no generated call that decide() allows.

import { celEnv, isCelError, parse, plan } from '@bufbuild/cel';
import type { Expr } from '@bufbuild/cel-spec/cel/expr/syntax_pb.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Identity } from '../../src/auth/verify.js';
import type { ClientMessage } from '../../src/mcp/guard.js';
import { parseBody } from '../../src/mcp/messages.js';
import type { Facts, Truth } from '../../src/mcp/policy/cel.js';
import { compileExpression, type CompiledExpression } from '../../src/mcp/policy/compile.js';
import { callOf, decide, factsOf, visible } from '../../src/mcp/policy/decide.js';
import { parsePolicy, type Rule } from '../../src/mcp/policy/file.js';
import { prefilterOf } from '../../src/mcp/policy/prefilter.js';
import { stringTestOf } from '../../src/mcp/policy/string-test.js';
import { conjuncts } from '../../src/mcp/policy/syntax.js';
import { toolsOf } from '../../src/mcp/policy/tool-index.js';

// ---- plain evaluation, the reference ----

const plainEnv = celEnv();
type Run = (bindings: Record<string, unknown>) => unknown;
const runs = new Map<string, Run>();

const bindings = (facts: Facts) => ({
  jwt: facts.jwt,
  user: facts.user,
  groups: facts.groups,
  roles: facts.roles,
  mcp: { ...facts.mcp },
  tool: { annotations: facts.tool.annotations },
});
// A rule's value as decide.ts reads it: a CEL error, or any value but a bool, is an error.
const truthOf = (value: unknown): Truth => (isCelError(value) || typeof value !== 'boolean' ? 'error' : value);

/** The source's truth by @bufbuild/cel alone. */
function plain(source: string, facts: Facts): Truth {
  let run = runs.get(source);
  if (run === undefined) runs.set(source, (run = plan(plainEnv, parse(source)) as Run));
  return truthOf(run(bindings(facts)));
}

const subexpressionRuns = new WeakMap<Expr, Run>();
/** A parsed subexpression's truth by @bufbuild/cel alone. */
function plainOf(expr: Expr, facts: Facts): Truth {
  let run = subexpressionRuns.get(expr);
  if (run === undefined) subexpressionRuns.set(expr, (run = plan(plainEnv, expr) as Run));
  return truthOf(run(bindings(facts)));
}

// ---- the names rules and messages draw from: few, so that they meet ----

const TOOLS = ['query', 'Query', 'count', 'drop_table', '', 'q😀'];
const METHODS = [
  'tools/call',
  'tools/list',
  'prompts/get',
  'resources/read',
  'initialize',
  'notifications/initialized',
  'completion/complete',
  'x/custom',
];
const USERS = ['ann', 'bob'];
const GROUPS = ['/alpha', '/beta', '/alpha/x'];
const ROLES = ['auditor', 'admin'];
const PROMPTS = ['greet', ''];
const RESOURCES = ['file:///a', 'db://x', ''];
// Names of Object.prototype too: an argument is an own member or none.
const ARGUMENT_NAMES = ['table', 'limit', '__proto__', 'toString'];
// Letters, a combining accent, a character outside the BMP (two UTF-16 units), case.
const CHARS = ['a', 'b', '_', '/', 'é', '\u0301', '😀', ' ', 'A'];
const MISSING = Symbol('missing');
// Argument values every pool holds: each JSON type, numbers near the rules' constants, halves of a surrogate pair.
const GENERIC: readonly unknown[] = [
  MISSING,
  null,
  true,
  false,
  0,
  4,
  5,
  5.5,
  6,
  -1,
  1e21,
  '',
  'a',
  'A',
  '/a',
  '😀',
  '\ud83d',
  '\ude00x',
  'é',
  'e\u0301',
  [],
  ['a'],
  {},
  { k: 'v' },
  { k: 1 },
];

const q = (value: unknown) => JSON.stringify(value);
const stringsAround = (c: string) => [
  c,
  `x${c}`,
  `${c}y`,
  `x${c}y`,
  c.slice(1),
  c.slice(0, -1),
  c.toUpperCase(),
  c + c,
  c.normalize('NFC'),
  c.normalize('NFD'),
];
const numbersAround = (n: number) => [n, n - 1, n + 1, n + 0.5, String(n)];

// ---- generated expressions ----

type Term =
  | { readonly kind: 'fact'; readonly text: string }
  /** An atom reading mcp.arguments.NAME: `$` stands for mcp.arguments.NAME, `%` for NAME; `seeds` join the argument's value pool. */
  | { readonly kind: 'argument'; readonly name: string; readonly template: string; readonly seeds: readonly unknown[] }
  | { readonly kind: 'and' | 'or'; readonly a: Term; readonly b: Term }
  | { readonly kind: 'not'; readonly a: Term }
  | { readonly kind: 'cond'; readonly c: Term; readonly a: Term; readonly b: Term };

const fact = (text: string): Term => ({ kind: 'fact', text });
const literal = fc.array(fc.constantFrom(...CHARS), { maxLength: 3 }).map((cs) => cs.join(''));
const nonEmpty = (pool: readonly string[]) => fc.subarray([...pool], { minLength: 1 });

/** Facts always bound with their type, against constants: prefilters and the tool index; never an error. */
const boundFactAtom: fc.Arbitrary<Term> = fc.oneof(
  fc.constantFrom(...TOOLS).map((t) => fact(`mcp.tool == ${q(t)}`)),
  fc.constantFrom(...TOOLS).map((t) => fact(`${q(t)} == mcp.tool`)),
  fc.subarray(TOOLS).map((ts) => fact(`mcp.tool in [${ts.map(q).join(', ')}]`)),
  fc.constantFrom(...METHODS).map((m) => fact(`mcp.method == ${q(m)}`)),
  nonEmpty(METHODS).map((ms) => fact(`mcp.method in [${ms.map(q).join(', ')}]`)),
  fc.constantFrom(...USERS).map((u) => fact(`user == ${q(u)}`)),
  nonEmpty(USERS).map((us) => fact(`user in [${us.map(q).join(', ')}]`)),
  fc.constantFrom(...GROUPS).map((g) => fact(`${q(g)} in groups`)),
  fc.constantFrom(...ROLES).map((r) => fact(`${q(r)} in roles`)),
  fc.constantFrom(...PROMPTS).map((p) => fact(`mcp.prompt == ${q(p)}`)),
  fc.constantFrom(...RESOURCES).map((r) => fact(`${q(r)} == mcp.resource`)),
  fc.constantFrom('true', 'false').map(fact),
);
const factAtom: fc.Arbitrary<Term> = fc.oneof(
  boundFactAtom,
  // Near misses, which CEL evaluates; and facts that may be absent or of another type.
  fc
    .constantFrom(
      'mcp.tool != "query"',
      'mcp.tool in ["query", mcp.method]',
      'mcp.tool == mcp.method',
      'mcp.resource.startsWith("file:")',
      'mcp.tool.contains("_")',
      'size(groups) > 1',
      'groups.exists(g, g.startsWith("/alpha"))',
      'jwt.email_verified == true',
      'has(jwt.email_verified)',
      'jwt.azp == "coder"',
      'jwt.n > 3',
      '"x" in jwt.list',
      'jwt.nested.k == "v"',
      'tool.annotations.readOnlyHint == true',
      'has(tool.annotations.readOnlyHint)',
      'tool.annotations.readOnlyHint',
      '1 / 0 == 1',
    )
    .map(fact),
);

const TESTS = ['startsWith', 'endsWith', 'contains'] as const;
type Form = { readonly template: string; readonly seeds: readonly unknown[] };
const stringTest = (operand: fc.Arbitrary<string>): fc.Arbitrary<Form> =>
  fc.tuple(fc.constantFrom(...TESTS), operand).map(([f, c]) => ({ template: `$.${f}(${q(c)})`, seeds: stringsAround(c) }));
/** Argument atoms that some value of the argument makes true and another false. */
const decidableForm: fc.Arbitrary<Form> = fc.oneof(
  // String tests: the JS fast path (weighted: it is what it is about), and the same test in a form only CEL evaluates.
  { arbitrary: stringTest(literal.filter((c) => c !== '')), weight: 3 },
  fc
    .tuple(
      fc.constantFrom(...TESTS),
      literal.filter((c) => c !== ''),
    )
    .map(([f, c]) => ({ template: `[$][0].${f}(${q(c)})`, seeds: stringsAround(c) })),
  // Comparisons with strings, numbers of each CEL type, bool and null; presence.
  fc.tuple(fc.constantFrom('==', '!='), literal).map(([op, c]) => ({ template: `$ ${op} ${q(c)}`, seeds: stringsAround(c) })),
  literal.map((c) => ({ template: `${q(c)} == $`, seeds: stringsAround(c) })),
  fc
    .array(literal, { minLength: 1, maxLength: 2 })
    .map((cs) => ({ template: `$ in [${cs.map(q).join(', ')}]`, seeds: cs.flatMap(stringsAround) })),
  fc
    .tuple(fc.constantFrom('==', '!=', '<', '>='), fc.constantFrom('5', '5.0', '5u', '-1', '0', '4.5'))
    .map(([op, n]) => ({ template: `$ ${op} ${n}`, seeds: numbersAround(Number.parseFloat(n)) })),
  fc
    .constantFrom('$ == true', '$', 'has($)', '"%" in mcp.arguments', '$.size() > 1', 'size($) == 0', '$.k == "v"', 'has($.k)', '$ == null')
    .map((template) => ({ template, seeds: [] })),
);
/** Any argument atom: also string tests of "" (never false), and calls no value can satisfy. */
const argumentForm: fc.Arbitrary<Form> = fc.oneof(
  { arbitrary: decidableForm, weight: 4 },
  stringTest(fc.constant('')),
  fc.constantFrom(...TESTS).map((f) => ({ template: `$.${f}(mcp.tool)`, seeds: TOOLS })),
  fc.constantFrom(...TESTS).map((f) => ({ template: `$.${f}("a", "b")`, seeds: [] })),
  fc.constantFrom(...TESTS).map((f) => ({ template: `$.${f}(1)`, seeds: [] })),
  fc.constant({ template: '$ in []', seeds: [] }),
);
const argumentAtomOf = (form: fc.Arbitrary<Form>): fc.Arbitrary<Term> =>
  fc.record({ name: fc.constantFrom(...ARGUMENT_NAMES), form }).map(({ name, form }) => ({ kind: 'argument', name, ...form }));
const argumentAtom = argumentAtomOf(argumentForm);

/** A rule's `when`: one to four conjuncts, each an atom or &&, ||, ! and ?: of them. */
function whenOf(atom: fc.Arbitrary<Term>): fc.Arbitrary<Term[]> {
  const { term } = fc.letrec<{ term: Term }>((tie) => ({
    term: fc.oneof(
      { maxDepth: 3, depthIdentifier: 'term' },
      atom,
      fc.record({ kind: fc.constantFrom('and' as const, 'or' as const), a: tie('term'), b: tie('term') }),
      tie('term').map((a): Term => ({ kind: 'not', a })),
      fc.record({ kind: fc.constant('cond' as const), c: tie('term'), a: tie('term'), b: tie('term') }),
    ),
  }));
  // A conjunct that is an atom is what the prefilters, string tests and the tool index look for.
  return fc.array(fc.oneof(atom, term), { minLength: 1, maxLength: 4 });
}
const when = whenOf(fc.oneof(factAtom, argumentAtom));

const isAtom = (t: Term) => t.kind === 'fact' || t.kind === 'argument';
const inner = (t: Term) => (isAtom(t) ? print(t) : `(${print(t)})`);
function print(t: Term): string {
  switch (t.kind) {
    case 'fact':
      return t.text;
    case 'argument':
      return t.template.replaceAll('$', `mcp.arguments.${t.name}`).replaceAll('%', t.name);
    case 'and':
      return `${inner(t.a)} && ${inner(t.b)}`;
    case 'or':
      return `${inner(t.a)} || ${inner(t.b)}`;
    case 'not':
      return `!(${print(t.a)})`;
    case 'cond':
      return `${inner(t.c)} ? ${inner(t.a)} : ${inner(t.b)}`;
  }
}
const source = (terms: readonly Term[]) => terms.map(inner).join(' && ');

function atoms(t: Term): Term[] {
  switch (t.kind) {
    case 'fact':
    case 'argument':
      return [t];
    case 'not':
      return atoms(t.a);
    case 'cond':
      return [...atoms(t.c), ...atoms(t.a), ...atoms(t.b)];
    default:
      return [...atoms(t.a), ...atoms(t.b)];
  }
}
const argumentAtoms = (terms: readonly Term[]) =>
  terms.flatMap(atoms).filter((t): t is Extract<Term, { kind: 'argument' }> => t.kind === 'argument');

/** Every argument atom reading an argument of its own (a0, a1, …): a read-once expression. */
function readOnce(terms: readonly Term[]): Term[] {
  let next = 0;
  const rename = (t: Term): Term => {
    switch (t.kind) {
      case 'fact':
        return t;
      case 'argument':
        return { ...t, name: `a${next++}` };
      case 'not':
        return { kind: 'not', a: rename(t.a) };
      case 'cond':
        return { kind: 'cond', c: rename(t.c), a: rename(t.a), b: rename(t.b) };
      default:
        return { kind: t.kind, a: rename(t.a), b: rename(t.b) };
    }
  };
  return terms.map(rename);
}

/** The values the rules compare each argument with (more are drawn from GENERIC). */
function seedsOf(terms: readonly Term[]): Map<string, unknown[]> {
  const byName = new Map<string, unknown[]>(ARGUMENT_NAMES.map((name) => [name, []]));
  for (const atom of argumentAtoms(terms)) byName.get(atom.name)!.push(...atom.seeds);
  return byName;
}

// ---- generated identities and messages ----

function jsonObject(entries: readonly (readonly [string, unknown])[]): Record<string, unknown> {
  return JSON.parse(`{${entries.map(([k, v]) => `${q(k)}:${q(v)}`).join(',')}}`) as Record<string, unknown>;
}

const claims = fc
  .record(
    {
      email_verified: fc.constantFrom(true, false, 'true'),
      azp: fc.constantFrom('coder', 'other'),
      n: fc.constantFrom(1, 4, '4'),
      list: fc.constantFrom(['x'], ['y'], 'x'),
      nested: fc.constantFrom({ k: 'v' }, { k: 1 }, 'v'),
    },
    { requiredKeys: [] },
  )
  .map((record) => jsonObject(Object.entries(record)));

const identity: fc.Arbitrary<Identity> = fc
  .record({
    user: fc.constantFrom(...USERS),
    groups: fc.option(fc.subarray(GROUPS), { nil: undefined }),
    roles: fc.option(fc.subarray(ROLES), { nil: undefined }),
    claims: fc.option(claims, { nil: undefined }),
  })
  .map(({ user, groups, roles, claims }) => ({ user, subject: `s-${user}`, email: undefined, groups, roles, claims }));

const annotations = fc.option(fc.constantFrom<Record<string, unknown>>({ readOnlyHint: true }, { readOnlyHint: 'yes' }, {}), {
  nil: undefined,
});

interface Envelope {
  readonly method: string;
  readonly name: unknown;
  readonly uri: unknown;
  readonly ref: unknown;
  /** Even: the name (or uri) is replaced by one the rules mention, or one a little different (see aimed). */
  readonly aim: number;
}
const envelope = (methods: readonly string[]): fc.Arbitrary<Envelope> =>
  fc.record({
    method: fc.constantFrom(...methods),
    name: fc.oneof(fc.constantFrom(...TOOLS, ...PROMPTS), fc.constant(7), fc.constant(MISSING)),
    uri: fc.constantFrom(...RESOURCES, MISSING),
    ref: fc.constantFrom(MISSING, { type: 'ref/prompt', name: 'greet' }, { type: 'ref/resource', uri: 'file:///a' }),
    aim: fc.nat({ max: 10_000 }),
  });

/** The string literals of a rule's source. */
const literalsOf = (text: string): string[] => [...text.matchAll(/"(?:[^"\\]|\\.)*"/g)].map(([literal]) => JSON.parse(literal) as string);
const nearNames = (c: string) => [
  c,
  c.toUpperCase(),
  `${c.charAt(0).toUpperCase()}${c.slice(1)}`,
  `${c} `,
  c.slice(0, -1),
  c.normalize('NFD'),
];

/** Half the envelopes name what the rules mention, or something a little different: case, a character more or less, the decomposed form. */
function aimed(e: Envelope, text: string): Envelope {
  const pool = literalsOf(text).flatMap(nearNames);
  if (e.aim % 2 === 1 || pool.length === 0) return e;
  const value = pool[Math.floor(e.aim / 2) % pool.length];
  return e.method === 'resources/read' ? { ...e, uri: value } : { ...e, name: value };
}

/** Which value each argument takes (half the time one the rules compare it with); the last pick shapes `arguments` itself. */
const picks = fc.array(fc.nat({ max: 10_000 }), { minLength: ARGUMENT_NAMES.length + 1, maxLength: ARGUMENT_NAMES.length + 1 });
type Arguments = readonly (readonly [string, unknown])[] | 'absent' | 'not an object';

function argumentsOf(pick: readonly number[], seeds: Map<string, unknown[]>): Arguments {
  const shape = pick[ARGUMENT_NAMES.length]! % 10;
  if (shape === 0) return 'absent';
  if (shape === 1) return 'not an object';
  return ARGUMENT_NAMES.flatMap((name, i) => {
    const own = seeds.get(name)!;
    const pool = own.length > 0 && pick[i]! % 2 === 0 ? own : GENERIC;
    const value = pool[Math.floor(pick[i]! / 2) % pool.length];
    return value === MISSING ? [] : [[name, value] as const];
  });
}

/** The message as the sidecar reads it: a JSON-RPC body through the real parser. */
function messageOf(e: Envelope, args: Arguments): ClientMessage {
  const params: string[] = [];
  if (e.name !== MISSING) params.push(`"name":${q(e.name)}`);
  if (e.uri !== MISSING) params.push(`"uri":${q(e.uri)}`);
  if (e.ref !== MISSING) params.push(`"ref":${q(e.ref)}`);
  if (args === 'not an object') params.push('"arguments":[]');
  else if (args !== 'absent') params.push(`"arguments":{${args.map(([k, v]) => `${q(k)}:${q(v)}`).join(',')}}`);
  const parsed = parseBody(Buffer.from(`{"jsonrpc":"2.0","id":1,"method":${q(e.method)},"params":{${params.join(',')}}}`));
  if (typeof parsed === 'string') throw new Error(`generated body not read: ${parsed}`);
  return parsed.messages[0]!;
}

// ---- the properties ----

const RUNS = 300;
// Each property runs RUNS generated cases (seconds of CPU): more than the default timeout on a busy machine.
const TIMEOUT_MS = 120_000;
/** Whether some ?: has a condition reading the arguments: only there may a definite partial answer turn into an error (partial.ts's header). */
function condOnArguments(t: Term): boolean {
  switch (t.kind) {
    case 'fact':
    case 'argument':
      return false;
    case 'not':
      return condOnArguments(t.a);
    case 'cond':
      return atoms(t.c).some((a) => a.kind === 'argument') || [t.c, t.a, t.b].some(condOnArguments);
    default:
      return condOnArguments(t.a) || condOnArguments(t.b);
  }
}

describe('the expression shortcuts give plain @bufbuild/cel evaluation', () => {
  it(
    'evaluate, each prefilter, each string test and the tool index: equal truths, errors included',
    () => {
      const seen = new Set<string>();
      fc.assert(
        fc.property(
          when,
          identity,
          annotations,
          envelope([...METHODS, 'tools/call', 'tools/call', 'tools/call', 'prompts/get']),
          fc.array(picks, { minLength: 1, maxLength: 8 }),
          (terms, who, ann, raw, sets) => {
            const text = source(terms);
            const e = aimed(raw, text);
            const call = { ...e, method: 'tools/call' };
            const compiled = compileExpression(text);
            const parts = conjuncts(parse(text).expr);
            const tools = toolsOf(parts);
            const seeds = seedsOf(terms);
            // The generated argument sets; each argument alone with every value its rules compare it with; a call of
            // every tool named like a literal of the rule (case, a character more or less, the decomposed form).
            const messages = sets.map((pick) => messageOf(e, argumentsOf(pick, seeds)));
            for (const [name, values] of seeds) for (const value of values) messages.push(messageOf(call, [[name, value]]));
            for (const name of literalsOf(text).flatMap(nearNames))
              messages.push(messageOf({ ...call, name }, argumentsOf(sets[0]!, seeds)));
            for (const message of messages) {
              const facts = factsOf(message, who, ann);
              const expected = plain(text, facts);
              expect(compiled.evaluate(facts), text).toBe(expected);
              seen.add(`evaluate:${expected}`);
              for (const part of parts) {
                const prefilter = prefilterOf(part);
                const stringTest = stringTestOf(part);
                if (prefilter === undefined && stringTest === undefined) continue;
                const reference = plainOf(part, facts);
                if (prefilter !== undefined) {
                  expect(prefilter(facts), text).toBe(reference);
                  seen.add(`prefilter:${reference}`);
                }
                if (stringTest !== undefined) {
                  expect(stringTest(facts), text).toBe(reference);
                  seen.add(`string test:${reference}`);
                }
              }
              // A rule the index leaves out for this tool must be false for it (not an error: skipping is treating it as false).
              if (tools !== undefined && !tools.has(facts.mcp.tool)) {
                expect(expected, text).toBe(false);
                seen.add('tool index:skipped');
              }
            }
          },
        ),
        { numRuns: RUNS },
      );
      // The generators reached every outcome of every shortcut.
      for (const outcome of [
        'evaluate:true',
        'evaluate:false',
        'evaluate:error',
        'prefilter:true',
        'prefilter:false',
        'string test:true',
        'string test:false',
        'string test:error',
        'tool index:skipped',
      ]) {
        expect(seen).toContain(outcome);
      }
    },
    TIMEOUT_MS,
  );

  it(
    'partial evaluation: a definite answer holds for every generated set of arguments',
    () => {
      const seen = new Set<string>();
      fc.assert(
        fc.property(
          when,
          identity,
          annotations,
          envelope(['tools/call', 'prompts/get']),
          fc.array(picks, { minLength: 1, maxLength: 12 }),
          (terms, who, ann, raw, sets) => {
            const text = source(terms);
            const e = aimed(raw, text);
            const compiled = compileExpression(text);
            const without = factsOf(messageOf(e, 'absent'), who, ann);
            const partial = compiled.evaluateWithoutArguments(without);
            seen.add(`partial:${partial}`);
            // Without an argument atom there is nothing to leave unknown: the same as plain evaluation.
            if (argumentAtoms(terms).length === 0) expect(partial, text).toBe(plain(text, without));
            const seeds = seedsOf(terms);
            const allowed: readonly Truth[] =
              partial === 'error' ? ['error'] : terms.some(condOnArguments) ? [partial, 'error'] : [partial];
            for (const pick of sets) {
              const actual = plain(text, factsOf(messageOf(e, argumentsOf(pick, seeds)), who, ann));
              if (partial !== 'unknown') expect(allowed, `${text} with ${q(argumentsOf(pick, seeds))}`).toContain(actual);
            }
          },
        ),
        // A partial `error` is rare (every part definite, none false): twice the cases.
        { numRuns: 2 * RUNS },
      );
      for (const outcome of ['partial:true', 'partial:false', 'partial:error', 'partial:unknown']) expect(seen).toContain(outcome);
    },
    TIMEOUT_MS,
  );

  it(
    'partial and full evaluation of rules without argument conditions are plain evaluation',
    () => {
      fc.assert(
        fc.property(whenOf(factAtom), identity, annotations, envelope(METHODS), (terms, who, ann, raw) => {
          const text = source(terms);
          const facts = factsOf(messageOf(aimed(raw, text), 'absent'), who, ann);
          const compiled = compileExpression(text);
          const expected = plain(text, facts);
          expect(compiled.evaluateWithoutArguments(facts), text).toBe(expected);
          expect(compiled.evaluate(facts), text).toBe(expected);
        }),
        { numRuns: RUNS },
      );
    },
    TIMEOUT_MS,
  );

  it(
    'partial evaluation is exact for read-once expressions: "can match" has a witness, "cannot" none',
    () => {
      let exercised = 0;
      const unknowns = { total: 0 };
      fc.assert(
        fc.property(
          whenOf(fc.oneof(boundFactAtom, argumentAtomOf(decidableForm))),
          identity,
          annotations,
          envelope(['tools/call', 'prompts/get']),
          (generated, who, ann, raw) => {
            const terms = readOnce(generated);
            const text = source(terms);
            const e = aimed(raw, text);
            const compiled = compileExpression(text);
            const withArguments = (args: readonly (readonly [string, unknown])[]) => factsOf(messageOf(e, args), who, ann);
            const without = withArguments([]);
            const partial = compiled.evaluateWithoutArguments(without);
            // Conditions of the class: every fact atom a bool here (no error), every argument atom
            // both true for some value of its argument and false for another.
            if (terms.flatMap(atoms).some((t) => t.kind === 'fact' && typeof plain(t.text, without) !== 'boolean')) return;
            const arguments_ = argumentAtoms(terms);
            if (arguments_.length > 5) return;
            const makers: [unknown, unknown][] = [];
            for (const atom of arguments_) {
              const outcome = (value: unknown) => plain(print(atom), withArguments(value === MISSING ? [] : [[atom.name, value]]));
              const values = [...GENERIC, ...atom.seeds];
              const yes = values.find((v) => outcome(v) === true);
              const no = values.find((v) => outcome(v) === false);
              if (yes === undefined || no === undefined) return;
              makers.push([yes, no]);
            }
            exercised++;
            const outcomes = new Set<Truth>();
            for (let combination = 0; combination < 1 << makers.length; combination++) {
              const args = makers.flatMap(([yes, no], i) => {
                const value = combination & (1 << i) ? yes : no;
                return value === MISSING ? [] : [[`a${i}`, value] as const];
              });
              outcomes.add(plain(text, withArguments(args)));
            }
            if (partial === 'unknown') unknowns.total++;
            expect([...outcomes].sort(), text).toEqual(partial === 'unknown' ? [false, true] : [partial]);
          },
        ),
        { numRuns: RUNS },
      );
      expect(exercised).toBeGreaterThan(RUNS / 4);
      expect(unknowns.total).toBeGreaterThan(RUNS / 20);
    },
    TIMEOUT_MS,
  );
});

// ---- policies ----

const policy = fc.array(fc.record({ effect: fc.constantFrom('allow' as const, 'deny' as const), terms: when }), {
  minLength: 1,
  maxLength: 5,
});
type Generated = readonly { readonly effect: 'allow' | 'deny'; readonly terms: readonly Term[] }[];

function rulesOf(generated: Generated): readonly Rule[] {
  const yaml = generated.map((r, i) => `  - name: r${i}\n    effect: ${r.effect}\n    when: ${q(source(r.terms))}\n`).join('');
  return parsePolicy(`rules:\n${yaml}`).rules!;
}
const withExpression = (rules: readonly Rule[], expression: (rule: Rule) => CompiledExpression): readonly Rule[] =>
  rules.map((rule) => ({ ...rule, expression: expression(rule) }));

describe('policy decisions with the shortcuts equal those with plain @bufbuild/cel', () => {
  it(
    'decide: the same judgement (allowed, rule, reason) for every generated message',
    () => {
      const seen = new Set<string>();
      fc.assert(
        fc.property(
          policy,
          identity,
          annotations,
          envelope(METHODS),
          fc.array(picks, { minLength: 1, maxLength: 6 }),
          (generated, who, ann, raw, sets) => {
            const e = aimed(raw, generated.map((r) => source(r.terms)).join(' '));
            const rules = rulesOf(generated);
            const reference = withExpression(rules, (rule) => ({
              evaluate: (facts) => plain(rule.when, facts),
              evaluateWithoutArguments: () => {
                throw new Error('not used by decide');
              },
              tools: undefined,
            }));
            const seeds = seedsOf(generated.flatMap((r) => r.terms));
            for (const pick of sets) {
              const message = messageOf(e, argumentsOf(pick, seeds));
              const judgement = decide(rules, message, who, ann);
              expect(judgement).toEqual(decide(reference, message, who, ann));
              seen.add(`${judgement.allowed}:${judgement.rule === undefined ? 'no rule' : 'a rule'}`);
            }
          },
        ),
        { numRuns: RUNS },
      );
      for (const outcome of ['true:a rule', 'true:no rule', 'false:a rule', 'false:no rule']) expect(seen).toContain(outcome);
    },
    TIMEOUT_MS,
  );

  it(
    'visible: a hidden item has no generated call that is allowed; the tool index changes nothing',
    () => {
      const seen = new Set<string>();
      const listOf: Record<string, string> = {
        'tools/call': 'tools/list',
        'prompts/get': 'prompts/list',
        'resources/read': 'resources/list',
      };
      fc.assert(
        fc.property(
          policy,
          identity,
          annotations,
          envelope(Object.keys(listOf)),
          fc.array(picks, { minLength: 1, maxLength: 12 }),
          (generated, who, ann, raw, sets) => {
            const e = aimed(raw, generated.map((r) => source(r.terms)).join(' '));
            const rules = rulesOf(generated);
            const item = { name: e.name === MISSING ? undefined : e.name, uri: e.uri === MISSING ? undefined : e.uri };
            const call = callOf(listOf[e.method]!, item);
            if (call === undefined) return;
            const shown = visible(rules, call, who, ann);
            const unindexed = withExpression(rules, ({ expression }) => ({
              evaluate: (facts) => expression.evaluate(facts),
              evaluateWithoutArguments: (facts) => expression.evaluateWithoutArguments(facts),
              tools: undefined,
            }));
            expect(shown).toEqual(visible(unindexed, call, who, ann));
            const reference = withExpression(rules, (rule) => ({
              evaluate: (facts) => plain(rule.when, facts),
              evaluateWithoutArguments: () => {
                throw new Error('not used by decide');
              },
              tools: undefined,
            }));
            const seeds = seedsOf(generated.flatMap((r) => r.terms));
            let witness = false;
            for (const pick of sets) {
              const allowed = decide(reference, messageOf(e, argumentsOf(pick, seeds)), who, ann).allowed;
              if (!shown.allowed) expect(allowed, `hidden by ${q(shown)}, yet allowed`).toBe(false);
              witness ||= allowed;
            }
            seen.add(`shown:${shown.allowed}`);
            if (shown.allowed && witness) seen.add('shown:with a witness');
          },
        ),
        { numRuns: RUNS },
      );
      for (const outcome of ['shown:true', 'shown:false', 'shown:with a witness']) expect(seen).toContain(outcome);
    },
    TIMEOUT_MS,
  );
});
