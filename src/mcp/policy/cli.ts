// `mcp-auth-sidecar policy check FILE` and `policy explain FILE --claims FILE.json --method M
// [--tool NAME] [--prompt NAME] [--resource URI] [--arguments JSON] [--annotations JSON]`:
// offline, for CI and for the person writing the policy.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Identity } from '../../auth/verify.js';
import type { ClientMessage } from '../guard.js';
import { LIST_ITEMS, decide, factsOf, visible } from './decide.js';
import { PolicyError, loadPolicyFile, type Rule } from './file.js';

const USAGE = `usage:
  mcp-auth-sidecar policy check FILE
  mcp-auth-sidecar policy explain FILE --claims CLAIMS.json --method METHOD
      [--tool NAME] [--prompt NAME] [--resource URI] [--arguments JSON] [--annotations JSON]
  CLAIMS.json is a token's payload (e.g. from a real token, decoded); the user is its
  OIDC_USER_CLAIM (default preferred_username); --annotations are the tool's as tools/list shows them.`;

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
    subject: text(claims.sub),
    email: text(claims.email),
    groups: strings(claims.groups),
    roles: strings((claims.realm_access as { roles?: unknown } | undefined)?.roles) ?? [],
    claims,
  };
}

function explain(rules: readonly Rule[], values: Record<string, string | undefined>, io: Output): number {
  if (values.claims === undefined || values.method === undefined) {
    io.err(`policy explain needs --claims and --method\n${USAGE}`);
    return 2;
  }
  const claims = jsonObject(readFileSync(values.claims, 'utf8'), `--claims ${values.claims}`);
  const args = values.arguments === undefined ? undefined : jsonObject(values.arguments, '--arguments');
  const annotations = values.annotations === undefined ? undefined : jsonObject(values.annotations, '--annotations');
  const identity = identityOf(claims, process.env.OIDC_USER_CLAIM?.trim() || 'preferred_username');
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
  io.out(`user: ${identity.user}  groups: ${JSON.stringify(identity.groups ?? [])}  roles: ${JSON.stringify(identity.roles)}`);
  if (LIST_ITEMS[values.method] !== undefined)
    io.out('lists pass; their items are filtered: ask about the call an item stands for, e.g. --method tools/call --tool NAME');
  if (values.method === 'tools/call' && values.tool !== undefined) {
    const shown = visible(rules, { ...message, arguments: undefined }, identity, annotations);
    io.out(`listed in tools/list: ${shown.allowed ? 'yes' : 'no'} (${shown.reason})`);
  }
  io.out('each rule on this call (true, false, or error: failed to evaluate):');
  const facts = factsOf(message, identity, annotations);
  for (const rule of rules) io.out(`  ${rule.effect} ${rule.name}: ${String(rule.expression.evaluate(facts))}`);
  return judgement.allowed ? 0 : 3;
}

/** Runs `policy ...`; returns the exit code: 0 valid / allowed, 1 invalid policy, 2 usage, 3 denied. */
export function runPolicyCommand(argv: readonly string[], io: Output = stdio): number {
  const [command, ...rest] = argv;
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
      },
    });
  } catch (error) {
    io.err(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const file = parsed.positionals[0];
  if ((command !== 'check' && command !== 'explain') || file === undefined || parsed.positionals.length !== 1) {
    io.err(USAGE);
    return 2;
  }
  try {
    const policy = loadPolicyFile(file);
    const rules = policy.rules ?? [];
    if (command === 'check') {
      io.out(
        policy.rules === undefined
          ? `${file}: valid, no rules: key (no tool policy: everything is allowed)`
          : `${file}: valid, ${rules.length} rule${rules.length === 1 ? '' : 's'} (${rules.filter((r) => r.effect === 'allow').length} allow, ${rules.filter((r) => r.effect === 'deny').length} deny)`,
      );
      return 0;
    }
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
