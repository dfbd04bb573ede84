// The tool policy as a Guard (src/mcp/guard.ts): judges every client message, filters the four
// list results, and learns tool annotations from the tools/list results passing by.

import type { Counter } from 'prom-client';
import { RPC_CODES } from '../../lib/errors.js';
import type { Caller, ClientMessage, Decision, DecisionAttributes, Guard } from '../guard.js';
// The audit's method label: mcp_auth_policy_decisions_total and mcp_auth_mcp_messages_total take the same values.
import { methodLabel } from '../messages.js';
import { LIST_ITEMS, callOf, decide, visible, type PolicyDecision } from './decide.js';
import type { Rule } from './file.js';
import { isStatelessVersion } from '../protocol-version.js';
import { CACHEABLE, privateScope } from '../results.js';
import { AUDIT_BOUNDS, cutUtf8 } from '../audit.js';

/** A message of the 2026-07-28 revision (its headers were checked against this `_meta` version). */
const stateless = (message: ClientMessage) => isStatelessVersion(message.meta?.protocolVersion);

/** JSON-RPC code of a denial (lib/errors.ts RPC_CODES; docs/mcp.md: Error codes). */
export const POLICY_DENIED_CODE = RPC_CODES.policyDenied;
/** Tool names whose annotations are remembered (then the oldest is forgotten). */
const MAX_KNOWN_TOOLS = 10_000;

export interface PolicyGuardOptions {
  readonly mode: 'enforce' | 'audit';
  readonly decisions?: Counter<'decision' | 'method'>;
  /** Called for a message audit mode lets through that enforce mode would refuse. */
  readonly onWouldDeny?: (message: ClientMessage, caller: Caller, policyDecision: PolicyDecision) => void;
}

export class PolicyGuard implements Guard {
  readonly name = 'tool policy';
  private rules: readonly Rule[];
  private readonly annotations = new Map<string, Readonly<Record<string, unknown>>>();

  constructor(
    rules: readonly Rule[],
    private readonly options: PolicyGuardOptions,
  ) {
    this.rules = rules;
  }

  /** A new policy version: takes effect for the next message. */
  replace(rules: readonly Rule[]): void {
    this.rules = rules;
  }

  /** The annotations the upstream last listed for a tool. */
  annotationsOf(tool: string): Readonly<Record<string, unknown>> | undefined {
    return this.annotations.get(tool);
  }

  judge(message: ClientMessage, caller: Caller): Decision {
    const policyDecision = decide(
      this.rules,
      message,
      caller.identity,
      message.tool === undefined ? undefined : this.annotations.get(message.tool),
    );
    const method = methodLabel(message.method);
    if (policyDecision.allowed) {
      this.options.decisions?.inc({ decision: 'allow', method });
      return { effect: 'allow', rule: policyDecision.rule };
    }
    if (this.options.mode === 'audit') {
      this.options.decisions?.inc({ decision: 'would_deny', method });
      this.options.onWouldDeny?.(message, caller, policyDecision);
      return { effect: 'allow', rule: policyDecision.rule, wouldDeny: true };
    }
    this.options.decisions?.inc({ decision: 'deny', method });
    if (policyDecision.scopes !== undefined) {
      const message_ = `${denialMessage(message, policyDecision.subject)} without the scope${policyDecision.scopes.length > 1 ? 's' : ''} ${policyDecision.scopes.join(' ')}`;
      return { effect: 'deny', rule: policyDecision.rule, rpcCode: POLICY_DENIED_CODE, message: message_, scopes: policyDecision.scopes };
    }
    return {
      effect: 'deny',
      rule: policyDecision.rule,
      rpcCode: POLICY_DENIED_CODE,
      message: denialMessage(message, policyDecision.subject),
    };
  }

  describe(decision: Decision): DecisionAttributes {
    const described: Record<string, string | boolean> = {
      'mcp_auth.policy.decision': decision.effect === 'allow' ? (decision.wouldDeny === true ? 'would_deny' : 'allow') : 'deny',
      'mcp_auth.policy.dry_run': this.options.mode === 'audit',
    };
    if ('rule' in decision && decision.rule !== undefined) described['mcp_auth.policy.rule'] = decision.rule;
    return described;
  }

  /** The four lists (filtered), and under 2026-07-28 resources/read too (its cacheScope). */
  rewrites(method: string, message?: ClientMessage): boolean {
    return LIST_ITEMS[method] !== undefined || (method === 'resources/read' && message !== undefined && stateless(message));
  }

  rewriteResult(message: ClientMessage, result: unknown, caller: Caller): unknown {
    const filtered = this.filtered(message, result, caller);
    // A result the policy filtered, or could have: for this caller only. A shared cache that kept
    // one user's list (or a read the policy allows them) would hand it to users it does not allow.
    if (!stateless(message) || !CACHEABLE.has(message.method)) return filtered;
    return privateScope(filtered ?? result) ?? filtered;
  }

  private filtered(message: ClientMessage, result: unknown, caller: Caller): unknown {
    const member = LIST_ITEMS[message.method];
    if (member === undefined || typeof result !== 'object' || result === null) return undefined;
    const items = (result as Record<string, unknown>)[member];
    if (!Array.isArray(items)) return undefined;
    if (message.method === 'tools/list') for (const item of items) this.learn(item);
    if (this.options.mode === 'audit') return undefined;
    const shown = items.filter((item) => {
      const call = callOf(message.method, item);
      if (call === undefined) return false; // an item without a name cannot be judged: not shown
      const annotations = message.method === 'tools/list' ? annotationsIn(item) : undefined;
      return visible(this.rules, call, caller.identity, annotations).allowed;
    });
    return shown.length === items.length ? undefined : { ...(result as Record<string, unknown>), [member]: shown };
  }

  private learn(item: unknown): void {
    const name = (item as { name?: unknown } | null)?.name;
    if (typeof name !== 'string') return;
    const annotations = annotationsIn(item);
    this.annotations.delete(name);
    if (annotations === undefined) return;
    if (this.annotations.size >= MAX_KNOWN_TOOLS) this.annotations.delete(this.annotations.keys().next().value!);
    this.annotations.set(name, annotations);
  }
}

/** A tool's annotations as listed, when they are an object. */
function annotationsIn(item: unknown): Readonly<Record<string, unknown>> | undefined {
  const annotations = (item as { annotations?: unknown } | null)?.annotations;
  return typeof annotations === 'object' && annotations !== null && !Array.isArray(annotations)
    ? (annotations as Record<string, unknown>)
    : undefined;
}

function denialMessage(message: ClientMessage, named?: string): string {
  if (named !== undefined) {
    return `Forbidden: ${message.method} of resource ${JSON.stringify(cutUtf8(named, AUDIT_BOUNDS.resource))} is not allowed by the tool policy`;
  }
  const subject = message.tool ?? message.prompt ?? message.resource;
  // The names are the client's: cut as in the audit line, so an answer never echoes megabytes.
  const method = cutUtf8(message.method, AUDIT_BOUNDS.method);
  return subject === undefined
    ? `Forbidden: ${method} is not allowed by the tool policy`
    : `Forbidden: ${method} of ${JSON.stringify(cutUtf8(subject, message.resource !== undefined ? AUDIT_BOUNDS.resource : AUDIT_BOUNDS.name))} is not allowed by the tool policy`;
}
