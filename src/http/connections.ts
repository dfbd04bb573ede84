// Client connections of the proxy port: their limits, and who may hold one. A connection that has
// never carried an accepted request is on probation: it has UNAUTHENTICATED_IDLE_SECONDS of
// silence, and at MAX_CONNECTIONS the oldest such connection makes room for a new one. So a
// client without a valid token cannot hold what a valid client needs: a flood of them costs its
// own sockets, not Coder's (test/integration/connection-flood.test.ts).
//
// A rejection does not close a connection on probation by itself: a new connection (and TLS
// handshake) for every rejected request cost far more than the rejection. It is closed with the
// answer only when the guard is under pressure (more than half of MAX_CONNECTIONS open), after
// REJECTIONS_PER_CONNECTION answers without an accepted request, or when the request has a body
// that would have to be read first (chunked, or over DRAINED_BODY_BYTES).

import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';
import type { Config } from '../config/config.js';
import { CLOSE, type ConnectionHeader } from '../lib/error-response.js';

export interface ClientLimits {
  /** Time to receive a request's headers (slow-header clients). */
  headersTimeoutMs: number;
  /** Time to receive a whole request, body included; not the response, so streams live on. */
  requestTimeoutMs: number;
  /** How often Node checks those two timeouts. */
  timeoutCheckMs: number;
  /** Open connections at most; beyond, one that never authenticated is closed, else the new one. */
  maxConnections: number;
  /** Request line and headers at most (Node's maxHeaderSize). */
  maxHeaderBytes: number;
  /** Silence allowed to a connection that has not carried an accepted request yet. */
  unauthenticatedIdleMs: number;
  /** Silence allowed between requests on a connection that has. */
  keepAliveTimeoutMs: number;
  /** Answers without an accepted request (rejections, the public metadata) a connection on probation gets; the last one closes it. */
  rejectionsPerConnection: number;
}

/** The default of rejectionsPerConnection: as many requests as nginx's `keepalive_requests` allows any connection. */
export const REJECTIONS_PER_CONNECTION = 1000;
/**
 * A rejected request's body Node reads and drops to reuse the connection, as its Content-Length
 * declares it; a longer one, or a chunked one of unknown length, closes the connection instead.
 */
export const DRAINED_BODY_BYTES = 64 * 1024;

const MiB = 1024 * 1024;
/** Assumed when no cgroup limit can be read: the pod limit of k8s/ (256 Mi). */
const DEFAULT_MEMORY_LIMIT = 256 * MiB;
/** The sidecar's own resident set under load, connections aside (bench/RESULTS.md: soak, 111-114 MiB). */
const RESERVED_MEMORY = 128 * MiB;
/**
 * What one hostile connection costs at worst: a socket, its HTTP parser and up to
 * MAX_HEADER_BYTES of headers held twice (the socket's chunks and the parser's strings), plus
 * slack (bench/RESULTS.md, bench:flood).
 */
const connectionCost = (maxHeaderBytes: number) => 2 * maxHeaderBytes + 8 * 1024;
const MAX_DERIVED_CONNECTIONS = 8192;
const MIN_DERIVED_CONNECTIONS = 64;

/** The container's memory limit: cgroup v2 `memory.max`, else v1 `memory.limit_in_bytes`; undefined when unlimited or unreadable. */
export function memoryLimitBytes(files = ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']): number | undefined {
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch {
      continue;
    }
    // v1 reports "unlimited" as a number near 2^63.
    const bytes = Number(text);
    if (/^\d+$/.test(text) && bytes < 2 ** 50) return bytes;
    return undefined;
  }
  return undefined;
}

/** MAX_CONNECTIONS=auto: what fits in the memory limit beside the sidecar itself. */
export function derivedMaxConnections(maxHeaderBytes: number, memoryLimit = memoryLimitBytes() ?? DEFAULT_MEMORY_LIMIT): number {
  const fitting = Math.floor((memoryLimit - RESERVED_MEMORY) / connectionCost(maxHeaderBytes));
  return Math.min(MAX_DERIVED_CONNECTIONS, Math.max(MIN_DERIVED_CONNECTIONS, fitting));
}

export function clientLimits(config: Config, overrides: Partial<ClientLimits> = {}): ClientLimits {
  return {
    headersTimeoutMs: config.headersTimeoutSeconds * 1000,
    requestTimeoutMs: config.requestTimeoutSeconds * 1000,
    timeoutCheckMs: 1000,
    maxConnections: config.maxConnections ?? derivedMaxConnections(config.maxHeaderBytes),
    maxHeaderBytes: config.maxHeaderBytes,
    unauthenticatedIdleMs: config.unauthenticatedIdleSeconds * 1000,
    keepAliveTimeoutMs: config.keepAliveTimeoutSeconds * 1000,
    rejectionsPerConnection: REJECTIONS_PER_CONNECTION,
    ...overrides,
  };
}

const AUTHENTICATED = Symbol('authenticated');
const EVICTED = Symbol('evicted');
const UNACCEPTED = Symbol('unaccepted answers');
type TrackedSocket = Socket & { [AUTHENTICATED]?: true; [EVICTED]?: true; [UNACCEPTED]?: number };

/** Whether Node can read what is left of a request's body cheaply enough to reuse its connection. */
function bodyIsDrainable(request: IncomingMessage): boolean {
  if (request.complete) return true;
  const headers = request.headers;
  if (headers['transfer-encoding'] !== undefined) return false;
  const length = headers['content-length'];
  return length === undefined || Number(length) <= DRAINED_BODY_BYTES;
}

export class ConnectionGuard {
  /** Connections on probation, oldest first (a Set keeps insertion order). */
  private readonly probation = new Set<Socket>();
  private open = 0;
  /** More connections open than this is pressure: answers without an accepted request close theirs. */
  private readonly pressureAbove: number;
  /** What a kept connection on probation is told of its idle time (Node would say KEEP_ALIVE_TIMEOUT_SECONDS). */
  private readonly probationKeepAlive: ConnectionHeader;
  /** A 'finish' listener of a response: Node has just given the kept connection its keep-alive time; it gets its own. */
  private readonly restoreIdleTime: (this: ServerResponse) => void;

  constructor(
    server: Server,
    private readonly limits: ClientLimits,
    private readonly onEvict: () => void,
  ) {
    this.pressureAbove = Math.floor(limits.maxConnections / 2);
    this.probationKeepAlive = ['keep-alive', `timeout=${Math.floor(limits.unauthenticatedIdleMs / 1000)}`];
    const idleMs = limits.unauthenticatedIdleMs;
    this.restoreIdleTime = function (this: ServerResponse) {
      this.req.socket.setTimeout(idleMs);
    };
    // With TLS, requests arrive on the TLS socket made after the handshake (its own object), and
    // the handshake itself is bounded by the server's handshakeTimeout.
    server.on(server instanceof TlsServer ? 'secureConnection' : 'connection', (socket: Socket) => this.admit(socket));
  }

  private admit(socket: Socket): void {
    if (this.open >= this.limits.maxConnections) {
      const oldest = this.probation.values().next().value;
      if (oldest === undefined) {
        // Every connection carries an accepted client: the newcomer waits for one of them to go.
        socket.destroy();
        return;
      }
      // Counted out now: its 'close' comes later, and the newcomer takes its place at once.
      this.probation.delete(oldest);
      (oldest as TrackedSocket)[EVICTED] = true;
      this.open--;
      oldest.destroy();
      this.onEvict();
    }
    this.open++;
    (socket as TrackedSocket)[UNACCEPTED] = 0;
    this.probation.add(socket);
    socket.setTimeout(this.limits.unauthenticatedIdleMs, () => socket.destroy());
    socket.once('close', () => {
      if ((socket as TrackedSocket)[EVICTED] === true) return;
      this.open--;
      this.probation.delete(socket);
    });
  }

  /** A request on this connection was accepted: it leaves probation for good. */
  authenticated(socket: Socket): void {
    const tracked = socket as TrackedSocket;
    if (tracked[AUTHENTICATED] === true) return;
    tracked[AUTHENTICATED] = true;
    this.probation.delete(socket);
    // Streams may stay silent for long; keep-alive idle time is Node's keepAliveTimeout.
    socket.setTimeout(0);
  }

  /**
   * A request is answered without being accepted (a rejection, or the public metadata): returns
   * the header the answer must carry about its connection, if any. An authenticated connection
   * stays as Node keeps it (undefined). One on probation is closed (`connection: close`) under
   * pressure, at its REJECTIONS_PER_CONNECTION-th such answer, or when the request's body is not
   * worth reading; otherwise it stays open with its short idle time, and says so (`keep-alive`).
   */
  connectionAfterUnaccepted(request: IncomingMessage, res: ServerResponse): ConnectionHeader | undefined {
    const socket = request.socket as TrackedSocket;
    if (socket[AUTHENTICATED] === true) return undefined;
    const answered = (socket[UNACCEPTED] ?? 0) + 1;
    socket[UNACCEPTED] = answered;
    // The client's own `connection: close` (or HTTP/1.0): Node closes it anyway.
    if (!res.shouldKeepAlive) return undefined;
    if (this.open > this.pressureAbove || answered >= this.limits.rejectionsPerConnection || !bodyIsDrainable(request)) return CLOSE;
    // Node gives a kept connection KEEP_ALIVE_TIMEOUT_SECONDS once the answer is written (its own
    // 'finish' listener, added before this one); the next request sets the timeout aside again.
    res.on('finish', this.restoreIdleTime);
    return this.probationKeepAlive;
  }
}
