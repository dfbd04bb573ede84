// MCP protocol versions as a request states them (the MCP-Protocol-Version header, else what the
// session's initialize negotiated) and what each allows. A request without either is taken as
// 2025-03-26, as the Streamable HTTP transport tells servers to do.

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
