// What `initialize` said, per MCP session (Mcp-Session-Id as the upstream returned it), for the
// audit line; and the requests the server sent on the session's streams, so that the client's
// later POSTed answer is recognised. Bounded: a least-recently-used map, entries forgotten after
// an idle time and on DELETE.

import { Lru } from '../lib/lru.js';

export const MAX_SESSIONS = 10_000;
export const SESSION_IDLE_MS = 60 * 60 * 1000;
/** Server requests awaiting the client's answer, per session (sampling, elicitation, roots). */
const MAX_SERVER_REQUESTS = 64;

export interface ServerRequest {
  readonly method: string;
  readonly seenAt: number;
}

export interface Session {
  /** `clientInfo.name/version` of initialize. */
  client: string | undefined;
  protocolVersion: string | undefined;
  lastSeenMs: number;
  serverRequests: Map<string, ServerRequest> | undefined;
}

export class Sessions {
  private readonly sessions: Lru<Session>;

  constructor(
    maxSessions = MAX_SESSIONS,
    private readonly idleMs = SESSION_IDLE_MS,
    private readonly now: () => number = Date.now,
  ) {
    this.sessions = new Lru(maxSessions);
  }

  get size(): number {
    return this.sessions.size;
  }

  get(id: string | undefined): Session | undefined {
    if (id === undefined) return undefined;
    const session = this.sessions.get(id);
    if (session === undefined) return undefined;
    const now = this.now();
    if (now - session.lastSeenMs > this.idleMs) {
      this.sessions.delete(id);
      return undefined;
    }
    session.lastSeenMs = now;
    return session;
  }

  /** A session the upstream created in answer to initialize. */
  start(id: string, client: string | undefined, protocolVersion: string | undefined): void {
    this.sessions.set(id, { client, protocolVersion, lastSeenMs: this.now(), serverRequests: undefined });
  }

  end(id: string): void {
    this.sessions.delete(id);
  }

  /** A request the server sent on a stream of this session. */
  serverRequest(id: string | undefined, rpcId: string, method: string): void {
    const session = this.get(id);
    if (session === undefined) return;
    const pending = (session.serverRequests ??= new Map());
    if (pending.size >= MAX_SERVER_REQUESTS) pending.delete(pending.keys().next().value!);
    pending.set(rpcId, { method, seenAt: this.now() });
  }

  /** The server request a client's response answers, forgotten once answered. */
  answered(id: string | undefined, rpcId: string): ServerRequest | undefined {
    const pending = this.get(id)?.serverRequests;
    const request = pending?.get(rpcId);
    if (request !== undefined) pending!.delete(rpcId);
    return request;
  }
}
