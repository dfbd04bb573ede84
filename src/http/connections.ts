// Client connections of the proxy port: their limits, and who may hold one. A connection that has
// never carried an accepted request is on probation: it has UNAUTHENTICATED_IDLE_SECONDS of
// silence, a rejection on it closes it, and at MAX_CONNECTIONS the oldest such connection makes
// room for a new one. So a client without a valid token cannot hold what a valid client needs:
// a flood of them costs its own sockets, not Coder's (test/integration/connection-flood.test.ts).

import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';
import type { Config } from '../config/config.js';

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
}

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
    ...overrides,
  };
}

const AUTHENTICATED = Symbol('authenticated');
const EVICTED = Symbol('evicted');
type TrackedSocket = Socket & { [AUTHENTICATED]?: true; [EVICTED]?: true };

export class ConnectionGuard {
  /** Connections on probation, oldest first (a Set keeps insertion order). */
  private readonly probation = new Set<Socket>();
  private open = 0;

  constructor(
    server: Server,
    private readonly limits: ClientLimits,
    private readonly onEvict: () => void,
  ) {
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

  isAuthenticated(socket: Socket): boolean {
    return (socket as TrackedSocket)[AUTHENTICATED] === true;
  }
}
