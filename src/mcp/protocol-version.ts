// MCP protocol revisions as a request names them: the MCP-Protocol-Version header and, from
// 2026-07-28 on, `_meta` `io.modelcontextprotocol/protocolVersion` in every request. Two eras
// share one endpoint, decided per request: 2025-03-26 to 2025-11-25 with sessions (initialize,
// Mcp-Session-Id), and 2026-07-28 without (the version, client and capabilities in each
// request's `_meta`, the Mcp-Method and Mcp-Name headers on every POST).

/** The first revision without sessions. */
export const STATELESS_VERSION = '2026-07-28';

export type Era = 'sessions' | 'stateless';

/**
 * Whether a version is 2026-07-28 or later, compared as the Go SDK and mcp-go compare (as strings:
 * dates in this form sort as strings), so that the sidecar puts a request in the era the server does.
 */
export function isStatelessVersion(version: string | undefined): boolean {
  return version !== undefined && version >= STATELESS_VERSION;
}

/**
 * The era of a POST: stateless when the MCP-Protocol-Version header names 2026-07-28 or later, or
 * when a message carries a `_meta` protocol version (the Go SDK then holds the request to the
 * header rules too: the header must be there and say the same).
 */
export function eraOf(headerVersion: string | undefined, carriesMetaVersion: boolean): Era {
  return carriesMetaVersion || isStatelessVersion(headerVersion) ? 'stateless' : 'sessions';
}

/**
 * Client request methods the 2026-07-28 revision defines (its extensions' methods, such as
 * tasks/*, aside). A server of that revision answers any other method with 404 and -32601.
 */
export const STATELESS_METHODS: ReadonlySet<string> = new Set([
  'server/discover',
  'subscriptions/listen',
  'tools/list',
  'tools/call',
  'prompts/list',
  'prompts/get',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'completion/complete',
]);
