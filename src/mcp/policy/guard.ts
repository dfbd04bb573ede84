// The tool policy as a Guard (src/mcp/guard.ts): judges every client message, filters the four
// list results, and learns tool annotations from the tools/list results passing by.

import type { Counter } from 'prom-client';
import type { Caller, ClientMessage, Decision, Guard } from '../guard.js';
// The audit's method label: mcp_auth_policy_decisions_total and mcp_auth_mcp_messages_total take the same values.
import { methodLabel } from '../messages.js';
import { LIST_ITEMS, callOf, decide, visible, type Judgement } from './decide.js';
import type { Rule } from './file.js';
import { AUDIT_BOUNDS, cutUtf8 } from '../audit.js';

/** JSON-RPC code of a denial: in the range JSON-RPC leaves to servers, unused by MCP and its SDKs (docs/tool-policy.md). */
export const POLICY_DENIED_CODE = -32003;
/** Tool names whose annotations are remembered (then the oldest is forgotten). */
const MAX_KNOWN_TOOLS = 10_000;

export interface PolicyGuardOptions {
  readonly mode: 'enforce' | 'audit';
  readonly decisions?: Counter<'decision' | 'method'>;
  /** Called for a message audit mode lets through that enforce mode would refuse. */
  readonly onWouldDeny?: (message: ClientMessage, caller: Caller, judgement: Judgement) => void;
}

export class PolicyGuard implements Guard {
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
    const judgement = decide(
      this.rules,
      message,
      caller.identity,
      message.tool === undefined ? undefined : this.annotations.get(message.tool),
    );
    const method = methodLabel(message.method);
    if (judgement.allowed) {
      this.options.decisions?.inc({ decision: 'allow', method });
      return { effect: 'allow', rule: judgement.rule };
    }
    if (this.options.mode === 'audit') {
      this.options.decisions?.inc({ decision: 'would_deny', method });
      this.options.onWouldDeny?.(message, caller, judgement);
      return { effect: 'allow', rule: judgement.rule };
    }
    this.options.decisions?.inc({ decision: 'deny', method });
    return { effect: 'deny', rule: judgement.rule, rpcCode: POLICY_DENIED_CODE, message: denialMessage(message) };
  }

  rewrites(method: string): boolean {
    return LIST_ITEMS[method] !== undefined;
  }

  rewriteResult(message: ClientMessage, result: unknown, caller: Caller): unknown {
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

function denialMessage(message: ClientMessage): string {
  const subject = message.tool ?? message.prompt ?? message.resource;
  // The names are the client's: cut as in the audit line, so an answer never echoes megabytes.
  const method = cutUtf8(message.method, AUDIT_BOUNDS.method);
  return subject === undefined
    ? `Forbidden: ${method} is not allowed by the tool policy`
    : `Forbidden: ${method} of ${JSON.stringify(cutUtf8(subject, message.resource !== undefined ? AUDIT_BOUNDS.resource : AUDIT_BOUNDS.name))} is not allowed by the tool policy`;
}
