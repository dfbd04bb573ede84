// What `initialize` said, per MCP session (Mcp-Session-Id as the upstream returned it), for the
// audit line; who the session belongs to (the subject and issuer whose initialize created it);
// and the requests the server sent on the session's streams, so that the client's later POSTed
// answer is recognised. Bounded: a least-recently-used map, entries forgotten after an idle time
// and on DELETE; every string kept is cut to a fixed length.

import { createHash } from 'node:crypto';
import type { Identity } from '../auth/verify.js';
import { cutUtf8 } from '../lib/utf8.js';
import { Lru } from '../lib/lru.js';

export const MAX_SESSIONS = 10_000;
export const SESSION_IDLE_MS = 60 * 60 * 1000;
/** Server requests awaiting the client's answer, per session (sampling, elicitation, roots). */
const MAX_SERVER_REQUESTS = 64;
/** Bytes kept of initialize's clientInfo.name and .version, and of the negotiated version (README: MCP audit). */
export const CLIENT_NAME_BYTES = 128;
export const CLIENT_VERSION_BYTES = 64;
const PROTOCOL_VERSION_BYTES = 64;
/** An owner key longer than this is kept as its SHA-256. */
const MAX_OWNER_LENGTH = 128;

const owners = new WeakMap<Identity, string>();

/**
 * Who may use a session: the token's issuer and subject (the user claim for a token without
 * `sub`), one string per Identity object (computed once: identities are shared per user).
 */
export function ownerOf(identity: Identity): string {
  let owner = owners.get(identity);
  if (owner === undefined) {
    const who = identity.subject !== undefined ? `sub:${identity.subject}` : `user:${identity.user}`;
    owner = `${identity.issuer ?? ''} ${who}`;
    if (owner.length > MAX_OWNER_LENGTH) owner = createHash('sha256').update(owner).digest('base64');
    owners.set(identity, owner);
  }
  return owner;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `name/version` of initialize's clientInfo, each cut (a client chooses them; they are kept for the session's life). */
export function clientOf(clientInfo: unknown): string | undefined {
  if (!isObject(clientInfo) || typeof clientInfo.name !== 'string') return undefined;
  const version = typeof clientInfo.version === 'string' ? cutUtf8(clientInfo.version, CLIENT_VERSION_BYTES) : '';
  return `${cutUtf8(clientInfo.name, CLIENT_NAME_BYTES)}/${version}`;
}

export interface ServerRequest {
  readonly method: string;
  readonly seenAt: number;
}

export interface Session {
  /** ownerOf the identity whose initialize created it (or that used it first, when the sidecar did not see it created). */
  owner: string | undefined;
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

  /** A session the upstream created in answer to initialize of `owner`. */
  start(id: string, client: string | undefined, protocolVersion: string | undefined, owner?: string): void {
    const version = protocolVersion === undefined ? undefined : cutUtf8(protocolVersion, PROTOCOL_VERSION_BYTES);
    this.sessions.set(id, { owner, client, protocolVersion: version, lastSeenMs: this.now(), serverRequests: undefined });
  }

  /**
   * Whether `owner` may use session `id`. A session the sidecar saw created belongs to its
   * creator; one it did not see (created before a restart, or forgotten) is bound to the first
   * owner that uses it, so it cannot change hands afterwards either.
   */
  claim(id: string, owner: string): boolean {
    const session = this.get(id);
    if (session === undefined) {
      this.sessions.set(id, { owner, client: undefined, protocolVersion: undefined, lastSeenMs: this.now(), serverRequests: undefined });
      return true;
    }
    session.owner ??= owner;
    return session.owner === owner;
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
