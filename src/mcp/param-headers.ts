// Mcp-Param-{Name} headers (MCP 2026-07-28): a tool's inputSchema may mark a property with
// `x-mcp-header`, and a client then mirrors that argument into a header of that name, for
// intermediaries to route on. The sidecar learns the marks from the tools/list results passing
// by (lists no longer vary per connection, so one table serves every user) and checks a call's
// headers against its arguments. Bounded: tools by least recent use, marks per tool, depth.

import { Lru } from '../lib/lru.js';

/** One marked property: the chain of `properties` keys to it and the header carrying it (lower case). */
export interface ParamBinding {
  readonly path: readonly string[];
  readonly header: string;
  /** `x-mcp-header` as the schema wrote it, for messages. */
  readonly name: string;
}

export const MAX_TOOLS_WITH_PARAM_HEADERS = 1000;
const MAX_BINDINGS_PER_TOOL = 32;
const MAX_DEPTH = 8;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The marked properties of an inputSchema, reachable through `properties` alone (the spec allows
 * no other path), as the Go SDK collects them: every non-empty string `x-mcp-header`.
 */
export function paramBindings(inputSchema: unknown): ParamBinding[] {
  const found: ParamBinding[] = [];
  const walk = (schema: unknown, path: string[]): void => {
    if (!isObject(schema) || !isObject(schema.properties) || path.length >= MAX_DEPTH) return;
    for (const key in schema.properties) {
      if (found.length >= MAX_BINDINGS_PER_TOOL) return;
      const property = schema.properties[key];
      if (!isObject(property)) continue;
      const next = [...path, key];
      const name = property['x-mcp-header'];
      if (typeof name === 'string' && name !== '') found.push({ path: next, header: `mcp-param-${name.toLowerCase()}`, name });
      walk(property, next);
    }
  };
  walk(inputSchema, []);
  return found;
}

/** The marked properties of the tools the upstream listed. */
export class ParamHeaders {
  private readonly tools = new Lru<readonly ParamBinding[]>(MAX_TOOLS_WITH_PARAM_HEADERS);

  /** A tools/list result: each listed tool's marks replace what was known of it. */
  learn(result: unknown): void {
    const tools = isObject(result) ? result.tools : undefined;
    if (!Array.isArray(tools)) return;
    for (const tool of tools) {
      if (!isObject(tool) || typeof tool.name !== 'string') continue;
      const bindings = paramBindings(tool.inputSchema);
      if (bindings.length > 0) this.tools.set(tool.name, bindings);
      else this.tools.delete(tool.name);
    }
  }

  /** The marks of a tool, when a listing showed any. */
  of(tool: string | undefined): readonly ParamBinding[] | undefined {
    return tool === undefined ? undefined : this.tools.get(tool);
  }

  get size(): number {
    return this.tools.size;
  }
}
