// What the sidecar reads in the results of the 2026-07-28 revision: a multi round-trip request's
// interim result (resultType input_required), and the caching hints of list and read results.

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Kinds of input named in one result, and the length of each name: bounded, they are the server's. */
const MAX_INPUT_KINDS = 8;
const MAX_KIND_LENGTH = 64;

/**
 * The kinds of input an input_required result asks for: the distinct methods of its
 * `inputRequests` (elicitation/create, sampling/createMessage, roots/list), sorted. undefined when
 * the result is not an input_required one.
 */
export function inputRequestKinds(result: unknown): string[] | undefined {
  if (!isObject(result) || result.resultType !== 'input_required') return undefined;
  const kinds = new Set<string>();
  const requests = isObject(result.inputRequests) ? result.inputRequests : {};
  for (const key in requests) {
    const method = (requests[key] as { method?: unknown } | null)?.method;
    if (typeof method !== 'string') continue;
    kinds.add(method.length > MAX_KIND_LENGTH ? `${method.slice(0, MAX_KIND_LENGTH)}…` : method);
    if (kinds.size === MAX_INPUT_KINDS) break;
  }
  return [...kinds].sort();
}

/** The methods whose results are CacheableResult (2026-07-28): lists, and resources/read. */
export const CACHEABLE: ReadonlySet<string> = new Set([
  'tools/list',
  'prompts/list',
  'resources/list',
  'resources/templates/list',
  'resources/read',
]);

/** The result with `cacheScope: "private"` (ttlMs and the rest kept), or undefined when it already says so. */
export function privateScope(result: unknown): Record<string, unknown> | undefined {
  if (!isObject(result) || result.cacheScope === 'private') return undefined;
  return { ...result, cacheScope: 'private' };
}
