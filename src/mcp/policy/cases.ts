// `policy test`: a file of cases (claims and a message, and the decision expected), so that a
// policy change is tested in CI like code. A case names a call or a listing:
//
//   claims:                     # named claim sets (a token's payload), used by the cases
//     alice: { preferred_username: alice, sub: "1", groups: ["/alpha"] }
//   cases:
//     - name: alice queries an alpha table
//       claims: alice           # a name above, or a mapping written in place
//       method: tools/call
//       tool: query
//       arguments: { table: alpha_orders }
//       expect: allow           # allow | deny | listed | hidden
//       rule: alpha-queries-alpha-tables   # optional: the rule that must decide
//
// `listed` and `hidden` ask whether the item (tool, prompt or resource) shows in its list.

import { parse } from 'yaml';
import type { Identity } from '../../auth/verify.js';
import type { ClientMessage } from '../guard.js';
import { decide, visible } from './decide.js';
import type { Rule } from './file.js';

const EXPECTATIONS = ['allow', 'deny', 'listed', 'hidden'] as const;
type Expectation = (typeof EXPECTATIONS)[number];

export interface Case {
  readonly name: string;
  readonly claims: Record<string, unknown>;
  readonly message: ClientMessage;
  readonly annotations: Record<string, unknown> | undefined;
  readonly expect: Expectation;
  readonly rule: string | undefined;
}

export interface CaseResult {
  readonly name: string;
  readonly passed: boolean;
  readonly got: string;
}

const isMapping = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Parses a cases file; throws one Error listing every problem, each naming its case. */
export function parseCases(text: string): Case[] {
  const document: unknown = parse(text);
  const problems: string[] = [];
  if (!isMapping(document) || !Array.isArray(document.cases)) throw new Error('a cases file is a mapping with a cases: list');
  const named = isMapping(document.claims) ? document.claims : {};
  const cases: Case[] = [];
  document.cases.forEach((raw: unknown, index) => {
    const where = `case ${index + 1}`;
    if (!isMapping(raw)) return problems.push(`${where}: expected a mapping`);
    const name = typeof raw.name === 'string' && raw.name !== '' ? raw.name : where;
    const claims = typeof raw.claims === 'string' ? named[raw.claims] : raw.claims;
    if (!isMapping(claims)) problems.push(`${name}: claims must name a claim set under claims: or be a mapping`);
    if (typeof raw.method !== 'string') problems.push(`${name}: method is required`);
    if (!EXPECTATIONS.includes(raw.expect as Expectation)) problems.push(`${name}: expect must be one of ${EXPECTATIONS.join(', ')}`);
    for (const key of ['tool', 'prompt', 'resource', 'rule'] as const) {
      if (raw[key] !== undefined && typeof raw[key] !== 'string') problems.push(`${name}: ${key} must be a string`);
    }
    for (const key of ['arguments', 'annotations'] as const) {
      if (raw[key] !== undefined && !isMapping(raw[key])) problems.push(`${name}: ${key} must be a mapping`);
    }
    if (!isMapping(claims) || typeof raw.method !== 'string' || !EXPECTATIONS.includes(raw.expect as Expectation)) return;
    cases.push({
      name,
      claims,
      message: {
        method: raw.method,
        id: 1,
        params: undefined,
        tool: raw.tool as string | undefined,
        prompt: raw.prompt as string | undefined,
        resource: raw.resource as string | undefined,
        arguments: raw.arguments as Record<string, unknown> | undefined,
      },
      annotations: raw.annotations as Record<string, unknown> | undefined,
      expect: raw.expect as Expectation,
      rule: raw.rule as string | undefined,
    });
  });
  if (problems.length > 0) throw new Error(problems.join('\n'));
  return cases;
}

export function runCase(rules: readonly Rule[], test: Case, identity: Identity): CaseResult {
  const listing = test.expect === 'listed' || test.expect === 'hidden';
  const judgement = listing
    ? visible(rules, { ...test.message, arguments: undefined }, identity, test.annotations)
    : decide(rules, test.message, identity, test.annotations);
  const outcome = listing ? (judgement.allowed ? 'listed' : 'hidden') : judgement.allowed ? 'allow' : 'deny';
  const got = `${outcome} (rule: ${judgement.rule ?? 'none'})`;
  const passed = outcome === test.expect && (test.rule === undefined || test.rule === judgement.rule);
  return { name: test.name, passed, got };
}
