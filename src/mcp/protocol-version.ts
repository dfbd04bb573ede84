// MCP protocol revisions as a request names them: the MCP-Protocol-Version header and, from
// 2026-07-28 on, `_meta` `io.modelcontextprotocol/protocolVersion` in every request. Two eras
// share one endpoint, decided per request: 2025-03-26 to 2025-11-25 with sessions (initialize,
// Mcp-Session-Id), and 2026-07-28 without (the version, client and capabilities in each
// request's `_meta`, the Mcp-Method and Mcp-Name headers on every POST).
//
// MCP protocol versions as a request states them (the MCP-Protocol-Version header, else what the
// session's initialize negotiated) and what each allows. A request without either is taken as
// 2025-03-26, as the Streamable HTTP transport tells servers to do.

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

/** What a server assumes when a request names no version (Streamable HTTP, 2025-06-18 and later). */
export const DEFAULT_PROTOCOL_VERSION = '2025-03-26';

/** The versions whose transport allowed JSON-RPC batches: 2025-06-18 removed them. */
const BATCHING_VERSIONS: ReadonlySet<string> = new Set(['2024-11-05', '2025-03-26']);

/**
 * The version a request is read under: its MCP-Protocol-Version header, else the session's
 * negotiated version, else DEFAULT_PROTOCOL_VERSION.
 */
export function requestProtocolVersion(header: string | string[] | undefined, sessionVersion: string | undefined): string {
  if (typeof header === 'string') return header;
  // Several copies: not one version. Read as the strictest, a version the sidecar does not know.
  if (Array.isArray(header)) return header.join(', ');
  return sessionVersion ?? DEFAULT_PROTOCOL_VERSION;
}

/** Whether a POST body may be a JSON-RPC batch (an array) under this version: only before 2025-06-18. */
export function allowsBatches(version: string): boolean {
  return BATCHING_VERSIONS.has(version);
}
