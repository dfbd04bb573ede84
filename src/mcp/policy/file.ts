// POLICY_FILE: YAML text → the rules, each expression compiled; every problem named with the
// file's line and column (yaml's positions; a CEL error's offset mapped back into the file).

import { readFileSync } from 'node:fs';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node, type Scalar } from 'yaml';
import { compileExpression, type CompiledExpression } from './compile.js';
import { ExpressionError } from './typecheck.js';

export interface Rule {
  readonly name: string;
  readonly effect: 'allow' | 'deny';
  readonly when: string;
  readonly expression: CompiledExpression;
  /** The line the rule starts on, for messages about it. */
  readonly line?: number;
  /** An allow rule's `scopes:`: it allows only a token whose `scope` holds all of them. */
  readonly scopes?: readonly string[];
}

export interface PolicyDocument {
  /** Undefined when the file has no `rules:` key (a file of limits only): no tool policy. */
  readonly rules: readonly Rule[] | undefined;
  /** The `limits:` key as written, for the rate limits (src/mcp/limits/): not read here. */
  readonly limits: unknown;
}

export interface Problem {
  readonly line: number;
  readonly column: number;
  readonly message: string;
}

export class PolicyError extends Error {
  constructor(
    readonly file: string,
    readonly problems: readonly Problem[],
  ) {
    super(problems.map((p) => `${file}:${p.line}:${p.column}: ${p.message}`).join('\n'));
    this.name = 'PolicyError';
  }
}

const TOP_KEYS = new Set(['rules', 'limits']);
const RULE_KEYS = new Set(['name', 'effect', 'when', 'description', 'scopes']);
// A scope token as RFC 6749 section 3.3 allows it: printable ASCII without space, quote or backslash.
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
const MAX_RULES = 1000;

/**
 * Where the i-th character of a scalar's value was written: the value is matched character by
 * character against its source text, skipping what YAML folds or strips (indentation, line
 * breaks, quotes, escapes), so an error points into the file, also inside a `>-` block.
 */
function sourceOffset(text: string, node: Scalar, valueOffset: number): number {
  const value = String(node.value);
  const [start, , end] = node.range ?? [0, 0, 0];
  let s = start;
  if (node.type === 'BLOCK_FOLDED' || node.type === 'BLOCK_LITERAL') s = text.indexOf('\n', s) + 1;
  for (let v = 0; v < valueOffset && v < value.length && s < end; v++) {
    const c = value[v]!;
    while (s < end && text[s] !== c && !(c === ' ' && text[s] === '\n')) s++;
    s++;
  }
  while (s < end && /\s/.test(text[s]!)) s++;
  return Math.min(s, end);
}

export function parsePolicy(text: string, file = 'policy'): PolicyDocument {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const problems: Problem[] = [];
  const at = (offset: number, message: string) => {
    const { line, col } = lines.linePos(offset);
    problems.push({ line, column: col, message });
  };
  const atNode = (node: Node | null | undefined, message: string) => at(node?.range?.[0] ?? 0, message);

  for (const error of doc.errors) at(error.pos[0], error.message.split('\n')[0]!);
  if (problems.length > 0) throw new PolicyError(file, problems);

  const root = doc.contents;
  if (!isMap(root)) {
    atNode(root, 'a policy is a mapping with a rules: list');
    throw new PolicyError(file, problems);
  }
  let rules: Rule[] | undefined;
  let limits: unknown;
  for (const pair of root.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (!TOP_KEYS.has(key)) {
      atNode(pair.key as Node, `unknown key ${JSON.stringify(key)}: expected ${[...TOP_KEYS].join(' or ')}`);
      continue;
    }
    if (key === 'limits') {
      limits = (pair.value as Node | null)?.toJSON();
      continue;
    }
    const list = pair.value as Node | null;
    if (!isSeq(list)) {
      atNode(list ?? (pair.key as Node), 'rules must be a list of rules (name, effect, when)');
      continue;
    }
    if (list.items.length > MAX_RULES) atNode(list, `at most ${MAX_RULES} rules`);
    rules = [];
    const names = new Map<string, number>();
    for (const item of list.items as (Node | null)[]) {
      if (!isMap(item)) {
        atNode(item ?? list, 'a rule is a mapping of name, effect and when');
        continue;
      }
      const fields = new Map<string, Scalar>();
      let scopes: string[] | undefined;
      for (const field of item.items) {
        const name = isScalar(field.key) ? String(field.key.value) : '';
        if (!RULE_KEYS.has(name)) {
          atNode(field.key as Node, `unknown rule key ${JSON.stringify(name)}: expected name, effect, when (and description, scopes)`);
        } else if (name === 'scopes') {
          const list = field.value as Node | null;
          const items = isSeq(list) ? list.items.map((i) => (isScalar(i) ? i.value : undefined)) : [];
          if (!isSeq(list) || items.length === 0 || !items.every((i): i is string => typeof i === 'string' && SCOPE_TOKEN.test(i))) {
            atNode(list ?? (field.key as Node), 'scopes must be a non-empty list of scope names (no spaces or quotes)');
          } else {
            scopes = [...new Set(items)];
          }
        } else if (!isScalar(field.value) || (typeof field.value.value !== 'string' && name !== 'when')) {
          atNode((field.value as Node | null) ?? (field.key as Node), `${name} must be a string`);
        } else {
          fields.set(name, field.value);
        }
      }
      const nameNode = fields.get('name');
      const effectNode = fields.get('effect');
      const whenNode = fields.get('when');
      const name = typeof nameNode?.value === 'string' ? nameNode.value : undefined;
      if (name === undefined || name === '') atNode(nameNode ?? item, 'a rule needs a name');
      else if (names.has(name))
        atNode(nameNode, `rule name ${JSON.stringify(name)} is used twice (first on line ${names.get(name)}): names must be unique`);
      else names.set(name, lines.linePos(nameNode!.range![0]).line);
      const effect = effectNode?.value;
      if (effect !== 'allow' && effect !== 'deny')
        atNode(effectNode ?? item, `effect must be allow or deny${effectNode ? `, not ${JSON.stringify(effect)}` : ''}`);
      if (effect === 'deny' && scopes !== undefined)
        atNode(item, 'scopes: belongs on allow rules (the scopes a call needs); a deny rule can test token.scopes in when');
      if (whenNode === undefined || typeof whenNode.value !== 'string' || whenNode.value.trim() === '') {
        atNode(whenNode ?? item, 'a rule needs when: a CEL expression (when: "true" for always)');
        continue;
      }
      const when = whenNode.value;
      let expression: CompiledExpression;
      try {
        expression = compileExpression(when);
      } catch (error) {
        if (!(error instanceof ExpressionError)) throw error;
        at(sourceOffset(text, whenNode, error.offset), `rule ${JSON.stringify(name ?? '?')}: ${error.message}`);
        continue;
      }
      if (name !== undefined && (effect === 'allow' || effect === 'deny'))
        rules.push({
          name,
          effect,
          when,
          expression,
          line: lines.linePos(item.range?.[0] ?? 0).line,
          ...(scopes === undefined ? {} : { scopes }),
        });
    }
  }
  if (problems.length > 0) throw new PolicyError(file, problems);
  return { rules, limits };
}

/** Reads and parses POLICY_FILE; an unreadable file is one problem at 1:1. */
export function loadPolicyFile(path: string): PolicyDocument {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new PolicyError(path, [{ line: 1, column: 1, message: `cannot read the file: ${(error as Error).message}` }]);
  }
  return parsePolicy(text, path);
}
