// `mcp-auth-sidecar policy check|explain|test`: offline, for CI and for the person writing the
// policy. check: every problem with its position, and warnings on likely mistakes; explain: one
// call rule by rule, or what a user sees and may call of a tools/list; test: a file of cases.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Identity } from '../../auth/verify.js';
import type { ClientMessage } from '../guard.js';
import { parseCases, runCase } from './cases.js';
import { LIST_ITEMS, decide, factsOf, visible } from './decide.js';
import { lintPolicy, toolNamesOf } from './lint.js';
import { PolicyError, loadPolicyFile, type Rule } from './file.js';

export const POLICY_USAGE = `usage:
  mcp-auth-sidecar policy check FILE [--tools TOOLS.json]
  mcp-auth-sidecar policy explain FILE --claims CLAIMS.json --method METHOD
      [--tool NAME] [--prompt NAME] [--resource URI] [--arguments JSON] [--annotations JSON]
  mcp-auth-sidecar policy explain FILE --claims CLAIMS.json --tools TOOLS.json
  mcp-auth-sidecar policy test FILE CASES.yaml
  CLAIMS.json is a token's payload (e.g. from a real token, decoded); the user is its
  OIDC_USER_CLAIM (default preferred_username); --annotations are the tool's as tools/list shows them;
  TOOLS.json is a tools/list reply (check warns on tools the rules name that it lacks; explain shows
  which of its tools the user sees and may call). Exit codes: 0 valid, allowed or every case
  passed; 1 invalid policy; 2 usage; 3 denied (explain); 4 a case failed (test).`;
const USAGE = POLICY_USAGE;

interface Output {
  out(text: string): void;
  err(text: string): void;
}

const stdio: Output = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
};

function jsonObject(text: string, what: string): Record<string, unknown> {
  const value: unknown = JSON.parse(text);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what} must be a JSON object`);
  return value as Record<string, unknown>;
}

function identityOf(claims: Record<string, unknown>, userClaim: string): Identity {
  const strings = (v: unknown) => (Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : undefined);
  const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return {
    user: text(claims[userClaim]) ?? text(claims.sub) ?? '',
    issuer: text(claims.iss),
    subject: text(claims.sub),
    email: text(claims.email),
    groups: strings(claims.groups),
    roles: strings((claims.realm_access as { roles?: unknown } | undefined)?.roles) ?? [],
    claims,
    scopes: (text(claims.scope) ?? '').split(' ').filter((scope) => scope !== ''),
  };
}

function explain(rules: readonly Rule[], values: Record<string, string | undefined>, io: Output): number {
  if (values.claims === undefined || (values.method === undefined && values.tools === undefined)) {
    io.err(`policy explain needs --claims, and --method or --tools\n${USAGE}`);
    return 2;
  }
  const claims = jsonObject(readFileSync(values.claims, 'utf8'), `--claims ${values.claims}`);
  const args = values.arguments === undefined ? undefined : jsonObject(values.arguments, '--arguments');
  const annotations = values.annotations === undefined ? undefined : jsonObject(values.annotations, '--annotations');
  const identity = identityOf(claims, process.env.OIDC_USER_CLAIM?.trim() || 'preferred_username');
  if (values.method === undefined) return explainTools(rules, identity, readTools(values.tools!), io);
  const message: ClientMessage = {
    method: values.method,
    id: 1,
    params: undefined,
    arguments: args,
    tool: values.tool,
    prompt: values.prompt,
    resource: values.resource,
  };
  const judgement = decide(rules, message, identity, annotations);
  io.out(`${judgement.allowed ? 'allow' : 'deny'}: ${judgement.reason}`);
  io.out(`rule: ${judgement.rule ?? '(none)'}`);
  // The scopes the call needs (the deciding allow rule's); refused for them alone: the client gets 403 insufficient_scope and can step up.
  if (judgement.scopes !== undefined) {
    io.out(
      `scopes needed: ${judgement.scopes.join(' ')}${judgement.allowed ? '' : ' (refused for scopes alone: 403 insufficient_scope, a client can step up)'}`,
    );
  }
  io.out(`user: ${identity.user}  groups: ${JSON.stringify(identity.groups ?? [])}  roles: ${JSON.stringify(identity.roles)}`);
  io.out(`token: iss ${JSON.stringify(identity.issuer ?? '')}  scopes: ${JSON.stringify(identity.scopes)}`);
  if (LIST_ITEMS[values.method] !== undefined)
    io.out('lists pass; their items are filtered: ask about the call an item stands for, e.g. --method tools/call --tool NAME');
  if (values.method === 'tools/call' && values.tool !== undefined) {
    const shown = visible(rules, { ...message, arguments: undefined }, identity, annotations);
    io.out(`listed in tools/list: ${shown.allowed ? 'yes' : 'no'} (${shown.reason})`);
  }
  io.out('each rule on this call (true, false, or error: failed to evaluate):');
  const facts = factsOf(message, identity, annotations);
  for (const rule of rules) {
    const scopes = rule.scopes === undefined ? '' : ` (needs scopes ${rule.scopes.join(' ')})`;
    io.out(`  ${rule.effect} ${rule.name}: ${String(rule.expression.evaluate(facts))}${scopes}`);
  }
  return judgement.allowed ? 0 : 3;
}

interface ListedTool {
  readonly name: string;
  readonly annotations: Record<string, unknown> | undefined;
}

function readTools(file: string): ListedTool[] {
  const reply: unknown = JSON.parse(readFileSync(file, 'utf8'));
  const names = toolNamesOf(reply);
  const result = (reply as { result?: unknown }).result ?? reply;
  const tools = (Array.isArray(result) ? result : (result as { tools: unknown[] }).tools) as { name?: unknown; annotations?: unknown }[];
  return tools
    .filter((tool) => typeof tool.name === 'string' && names.has(tool.name))
    .map((tool) => ({
      name: tool.name as string,
      annotations:
        typeof tool.annotations === 'object' && tool.annotations !== null ? (tool.annotations as Record<string, unknown>) : undefined,
    }));
}

/** Each tool of a tools/list: whether the user sees it, and whether a call without arguments is allowed. */
function explainTools(rules: readonly Rule[], identity: Identity, tools: readonly ListedTool[], io: Output): number {
  io.out(`user: ${identity.user}  groups: ${JSON.stringify(identity.groups ?? [])}  roles: ${JSON.stringify(identity.roles)}`);
  for (const tool of tools) {
    const call: ClientMessage = {
      method: 'tools/call',
      id: 1,
      params: undefined,
      tool: tool.name,
      prompt: undefined,
      resource: undefined,
      arguments: undefined,
    };
    const shown = visible(rules, call, identity, tool.annotations);
    const called = decide(rules, call, identity, tool.annotations);
    io.out(
      `  ${tool.name}: ${shown.allowed ? 'listed' : 'hidden'} (${shown.rule ?? 'no rule'}); a call without arguments: ${called.allowed ? 'allow' : 'deny'} (${called.rule ?? called.reason})${called.scopes === undefined ? '' : `; scopes needed: ${called.scopes.join(' ')}`}`,
    );
  }
  return 0;
}

function check(file: string, rules: readonly Rule[] | undefined, toolsFile: string | undefined, io: Output): number {
  const all = rules ?? [];
  io.out(
    rules === undefined
      ? `${file}: valid, no rules: key (no tool policy: everything is allowed)`
      : `${file}: valid, ${all.length} rule${all.length === 1 ? '' : 's'} (${all.filter((r) => r.effect === 'allow').length} allow, ${all.filter((r) => r.effect === 'deny').length} deny)`,
  );
  const tools = toolsFile === undefined ? undefined : toolNamesOf(JSON.parse(readFileSync(toolsFile, 'utf8')));
  for (const warning of lintPolicy(all, tools))
    io.out(`${file}:${warning.line ?? 1}: warning: rule ${JSON.stringify(warning.rule)}: ${warning.message}`);
  return 0;
}

function test(rules: readonly Rule[], casesFile: string, io: Output): number {
  const cases = parseCases(readFileSync(casesFile, 'utf8'));
  const userClaim = process.env.OIDC_USER_CLAIM?.trim() || 'preferred_username';
  let failed = 0;
  for (const result of cases.map((c) => runCase(rules, c, identityOf(c.claims, userClaim)))) {
    if (!result.passed) failed++;
    const expected = cases.find((c) => c.name === result.name)!;
    io.out(
      `${result.passed ? 'ok  ' : 'FAIL'} ${result.name}${result.passed ? '' : `: expected ${expected.expect}${expected.rule ? ` (rule: ${expected.rule})` : ''}, got ${result.got}`}`,
    );
  }
  io.out(`${cases.length - failed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 4;
}

/** Runs `policy ...`; returns the exit code: 0 valid / allowed / passed, 1 invalid policy, 2 usage, 3 denied, 4 a case failed. */
export function runPolicyCommand(argv: readonly string[], io: Output = stdio): number {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    if (command !== undefined) {
      io.out(USAGE);
      return 0;
    }
    io.err(USAGE);
    return 2;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: [...rest],
      allowPositionals: true,
      strict: true,
      options: {
        claims: { type: 'string' },
        method: { type: 'string' },
        tool: { type: 'string' },
        prompt: { type: 'string' },
        resource: { type: 'string' },
        arguments: { type: 'string' },
        annotations: { type: 'string' },
        tools: { type: 'string' },
      },
    });
  } catch (error) {
    io.err(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const [file, casesFile] = parsed.positionals;
  const positionals = command === 'test' ? 2 : 1;
  if (!['check', 'explain', 'test'].includes(command ?? '') || file === undefined || parsed.positionals.length !== positionals) {
    io.err(USAGE);
    return 2;
  }
  try {
    const policy = loadPolicyFile(file);
    const rules = policy.rules ?? [];
    if (command === 'check') return check(file, policy.rules, parsed.values.tools, io);
    if (command === 'test') return test(rules, casesFile!, io);
    if (policy.rules === undefined) {
      io.out('allow: the file has no rules: key (no tool policy: everything is allowed)');
      return 0;
    }
    return explain(rules, parsed.values, io);
  } catch (error) {
    if (error instanceof PolicyError) {
      io.err(error.message);
      return 1;
    }
    io.err(`policy ${command}: ${(error as Error).message}`);
    return 2;
  }
}
