// Likely mistakes in a valid policy, for `policy check`: warnings, not errors, since each can be
// meant. They read the string constants the rules compare against (the `when` text, not values
// at run time), so they speak only of what is written.

import { MCP_METHODS } from '../messages.js';
import type { Rule } from './file.js';

export interface Warning {
  readonly rule: string;
  readonly line: number | undefined;
  readonly message: string;
}

const STRING = String.raw`(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')`;
const GROUP_IN = new RegExp(String.raw`${STRING}\s+in\s+groups\b`, 'g');
const METHOD_EQ = new RegExp(String.raw`mcp\.method\s*==\s*${STRING}|${STRING}\s*==\s*mcp\.method`, 'g');
const TOOL_EQ = new RegExp(String.raw`mcp\.tool\s*==\s*${STRING}|${STRING}\s*==\s*mcp\.tool`, 'g');

function constants(when: string, pattern: RegExp): string[] {
  return [...when.matchAll(pattern)].map((m) => m.slice(1).find((group) => group !== undefined) ?? '');
}

/** The warnings for rules that parsed; `tools` (names from a tools/list reply) adds the unknown-tool check. */
export function lintPolicy(rules: readonly Rule[], tools?: ReadonlySet<string>): Warning[] {
  const warnings: Warning[] = [];
  for (const rule of rules) {
    const warn = (message: string) => warnings.push({ rule: rule.name, line: rule.line, message });
    for (const group of constants(rule.when, GROUP_IN)) {
      if (!group.startsWith('/'))
        warn(
          `group ${JSON.stringify(group)} has no leading "/": Keycloak's groups claim names a group by its path (${JSON.stringify(`/${group}`)}) unless the mapper's "Full group path" is off`,
        );
    }
    for (const method of constants(rule.when, METHOD_EQ)) {
      if (!MCP_METHODS.has(method)) warn(`${JSON.stringify(method)} is not an MCP method: the rule never matches on it`);
    }
    if (tools !== undefined) {
      for (const tool of constants(rule.when, TOOL_EQ)) {
        if (!tools.has(tool))
          warn(`tool ${JSON.stringify(tool)} is not in the given tools/list: a typo, or a tool the server no longer has`);
      }
    }
  }
  return warnings;
}

/** Tool names of a tools/list reply: a JSON-RPC response, its result, or the tools array itself. */
export function toolNamesOf(reply: unknown): Set<string> {
  const result = (reply as { result?: unknown } | null)?.result ?? reply;
  const tools = Array.isArray(result) ? result : (result as { tools?: unknown } | null)?.tools;
  if (!Array.isArray(tools)) throw new Error('expected a tools/list reply: {"result": {"tools": [...]}}, its result, or the tools array');
  return new Set(tools.map((tool) => (tool as { name?: unknown } | null)?.name).filter((name): name is string => typeof name === 'string'));
}
