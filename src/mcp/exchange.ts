// The JSON-RPC side of one MCP exchange (one HTTP request to the upstream and its response): the
// requests and notifications read from the request body, the upstream's responses matched to
// them by id, and each message ended exactly once (McpContext.end: audit line, metrics, guards
// settled). A reply a guard rewrites (list filtering) is held until read; where it cannot be
// read, the client gets a JSON-RPC error instead (fail closed). The bytes are the
// ResponseFramer's (framing.ts): this side sees only whole units of JSON text.
//
// States and transitions (TRANSITIONS below):
//
//   awaiting ──start──> holding      a reply to rewrite is due: units are held until read
//       │                  │  └─────> passing (its last held reply was read)
//       │                  ├────────> failed-closed (a held unit cannot be read: errors in its place)
//       │                  └────────> unreadable (a held JSON body that is not JSON, HTTP status >= 300: passes)
//       │                            (an unreadable success with content is held and failed closed, never passed)
//       ├──start──> passing ────────> unreadable (a unit cannot be read)
//       └──start──> unreadable (a body that cannot be read)
//   every state ──response over──> done
//
// Requests still unanswered at `done` end `unknown` when something could not be read
// (unreadable, failed-closed) and the HTTP status is below 400, else `upstream_error`.
//
// Under `hold` nothing passes that was not read: a unit that is not JSON, a second answer to a
// request already answered, an answer to an id answered here, are not written (a held request
// still unanswered gets its error instead). Ends of a held JSON body wait for the body to be
// written, so that their audit lines count its bytes.

import type { OutgoingHttpHeaders } from 'node:http';
import type { Caller, ClientMessage } from './guard.js';
import type { Outcome } from './audit.js';
import { idKey, type McpContext, type Pending } from './context.js';
import { methodLabel, type ClientResponse } from './messages.js';
import { inputRequestKinds } from './results.js';
import { RPC_CODES } from '../lib/errors.js';
import { clientOf, ownerOf } from './sessions.js';
import { ResponseFramer, type BodyKind, type Handling, type Replacement, type ResponseEnd, type UnitHandler } from './framing.js';

type Json = Record<string, unknown>;

/** The requests an input_required result may answer (MCP 2026-07-28, multi round-trip requests). */
const MULTI_ROUND_TRIP: ReadonlySet<string> = new Set(['tools/call', 'prompts/get', 'resources/read']);

export type ExchangeState = 'awaiting' | 'holding' | 'passing' | 'unreadable' | 'failed-closed' | 'done';

export const TRANSITIONS: Readonly<Record<ExchangeState, readonly ExchangeState[]>> = {
  awaiting: ['holding', 'passing', 'unreadable', 'done'],
  holding: ['passing', 'failed-closed', 'unreadable', 'done'],
  passing: ['unreadable', 'done'],
  unreadable: ['done'],
  'failed-closed': ['done'],
  done: [],
};

const UNFILTERED = { code: RPC_CODES.responseUnchecked, message: 'the response could not be read to apply the tool policy' };
const UNMATCHED = {
  code: RPC_CODES.responseUnchecked,
  message: "a result outside its request's response cannot be checked against the tool policy (use the Streamable HTTP transport)",
};
/** A message of a reply that is not written. */
const DROP = Symbol('drop');

const FINISHED_BY: Record<ResponseEnd, Outcome | undefined> = {
  complete: undefined,
  upstream_failed: 'upstream_error',
  client_gone: 'cancelled',
};

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A success that can carry content (204 and 205 have none): one the client would read. */
function carriesSuccess(status: number): boolean {
  return status >= 200 && status < 300 && status !== 204 && status !== 205;
}

function isId(value: unknown): value is string | number {
  return typeof value === 'string' || typeof value === 'number';
}

export interface ExchangeStart {
  readonly reqId: string;
  readonly clientRequestId?: string | undefined;
  readonly caller: Caller;
  readonly startedAt: number;
  readonly bytesIn: number;
  /** Requests and notifications read from the body, allowed by every guard. */
  readonly pending: readonly Pending[];
  /** The client's answers to the server's own requests in this body. */
  readonly responses: readonly ClientResponse[];
  /** The body was not read (over the limit, not JSON): one line with method `unparsed`. */
  readonly unparsed: boolean;
  /** Called when the response starts: the upstream has the body by then (its read budget is given back). */
  readonly delivered?: () => void;
}

export class McpExchange implements UnitHandler {
  /** What the proxy calls with the response's bytes. */
  readonly reader: ResponseFramer;
  private state: ExchangeState = 'awaiting';
  /** Requests of the body by id: what the upstream's responses are matched against (ids are unique: read-request.ts, McpContext.reserve). */
  private readonly requests = new Map<string, Pending>();
  /** Notifications, and the `unparsed` line: they end when the response does. */
  private readonly others: Pending[] = [];
  private readonly unparsed: Pending | undefined;
  /** Requests whose reply a guard rewrites, not yet ended. */
  private held = 0;
  private status = 0;
  private kind: BodyKind = 'unreadable';
  private handling: Handling = 'pass';
  /** Ids the sidecar answered itself (fail closed): the upstream's answers to them never pass. */
  private answeredHere: Set<string> | undefined;
  /** Mcp-Session-Id of the response (initialize creates it). */
  private responseSession: string | undefined;
  /** The subscriptions/listen request whose stream this response is (MCP 2026-07-28). */
  private listen: Pending | undefined;
  /** A body held whole: its messages' ends, done once it is written (their bytesOut is its length). */
  private endsWritten: Array<() => void> | undefined;
  private answered: Set<Pending> | undefined;

  constructor(
    private readonly context: McpContext,
    private readonly origin: ExchangeStart,
  ) {
    this.reader = new ResponseFramer(this, context.config.mcpMaxBodyBytes);
    // Where a body's requests are registered by id, for the responses to be matched against.
    for (const pending of origin.pending) {
      const id = pending.message.id;
      // A request whose id is taken (never, as bodies are read) still ends with the others.
      if (id === undefined || this.requests.has(idKey(id))) this.others.push(pending);
      else {
        this.requests.set(idKey(id), pending);
        if (pending.rewriters !== undefined) this.held++;
      }
    }
    if (origin.unparsed) {
      this.unparsed = this.pendingOf({ method: 'unparsed', id: undefined });
      this.others.push(this.unparsed);
    }
  }

  private moveTo(next: ExchangeState): void {
    if (!TRANSITIONS[this.state].includes(next)) throw new Error(`MCP exchange: no transition from ${this.state} to ${next}`);
    this.state = next;
  }

  start(statusCode: number, headers: OutgoingHttpHeaders, kind: BodyKind): Handling {
    this.origin.delivered?.();
    this.status = statusCode;
    this.kind = kind;
    const session = headers['mcp-session-id'];
    if (typeof session === 'string') this.responseSession = session;
    // A subscriptions/listen request answered with an event stream: the subscription is open.
    if (kind === 'sse' && statusCode < 300) {
      for (const pending of this.requests.values()) {
        if (pending.message.method === 'subscriptions/listen') {
          this.listen = pending;
          this.context.opened(pending, this.reader.bytesOut);
        }
      }
    }
    if (this.held > 0 && (kind !== 'unreadable' || carriesSuccess(statusCode))) {
      // A reply to rewrite: held until read. In a form that cannot be read, the framer drops it
      // and the held requests get errors at the end instead (fail closed).
      this.moveTo('holding');
      this.handling = 'hold';
      // A body held whole (JSON, or one replaced by errors): written once over.
      if (kind !== 'sse') {
        this.endsWritten = [];
        this.answered = new Set();
      }
    } else {
      this.moveTo(kind === 'unreadable' ? 'unreadable' : 'passing');
      // With a guard that rewrites results, every event is read whole before it passes: a result
      // arriving on a stream other than its request's (the legacy HTTP+SSE transport answers on
      // its GET stream; a resumed stream replays) cannot be filtered, and must not pass unread.
      this.handling = kind === 'sse' && this.context.rewriting ? 'hold' : 'pass';
    }
    return this.handling;
  }

  unit(text: string | undefined, named = false): Replacement {
    if (this.state === 'done') return undefined;
    if (text === undefined) {
      if (this.state === 'holding') return this.failClosed();
      if (this.state === 'passing') this.moveTo('unreadable');
      return [];
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return this.notJson(named);
    }
    const batch = Array.isArray(value);
    const messages: unknown[] = batch ? (value as unknown[]) : [value];
    let changed = false;
    const replaced: unknown[] = [];
    for (const message of messages) {
      const replacement = isObject(message) && this.isAnsweredHere(message.id) ? DROP : this.read(message);
      if (replacement === undefined) replaced.push(message);
      else {
        changed = true;
        if (replacement !== DROP) replaced.push(replacement);
      }
    }
    if (!changed) return undefined;
    if (replaced.length === 0) return [];
    return [JSON.stringify(batch ? replaced : replaced[0])];
  }

  private notJson(named: boolean): Replacement {
    if (this.kind === 'sse' && this.handling === 'hold') {
      // An event of another type (the legacy transport's `endpoint`) is no message to any client.
      if (named) return undefined;
      // A held message event that is not JSON is not written: a client could read it otherwise.
      if (this.state === 'holding') return this.failClosed();
      if (this.state === 'passing') this.moveTo('unreadable');
      return [];
    }
    if (this.state === 'holding') {
      // A held JSON body: an HTTP error's text passes, a success's is not let through.
      if (this.status < 300) return this.failClosed();
      this.moveTo('unreadable');
      return undefined;
    }
    if (this.state === 'passing') this.moveTo('unreadable');
    return undefined;
  }

  private isAnsweredHere(id: unknown): boolean {
    return this.answeredHere !== undefined && isId(id) && this.answeredHere.has(idKey(id));
  }

  /**
   * One message from the upstream, matched by id to a request of the body; returns a replacement
   * when a guard rewrote its result, DROP when it must not be written.
   */
  private read(message: unknown): Json | typeof DROP | undefined {
    if (!isObject(message)) return undefined;
    const { id, method } = message;
    if (typeof method === 'string') {
      // A request of the server (sampling, elicitation, roots): its answer comes in a later POST.
      if (isId(id)) this.context.sessions.serverRequest(this.origin.caller.sessionId, idKey(id), method);
      else if (this.listen !== undefined && !this.listen.ended) {
        // A change notification on a subscription's stream: it passes, counted.
        this.listen.notifications = (this.listen.notifications ?? 0) + 1;
        this.context.metrics.subscriptionNotifications.inc({ method: methodLabel(method) });
      }
      return undefined;
    }
    const error = isObject(message.error) ? message.error : undefined;
    if (error === undefined && !('result' in message)) return undefined;
    const code = typeof error?.code === 'number' ? error.code : undefined;
    const pending = isId(id) ? this.requests.get(idKey(id)) : undefined;
    if (pending === undefined) {
      // A result for no request of this exchange: its method is unknown here, so no guard could
      // filter it; under a rewriting guard it is answered as an error instead (fail closed).
      if (this.context.rewriting && error === undefined && isId(id)) return { jsonrpc: '2.0', id, error: UNMATCHED };
      if (this.unparsed !== undefined) this.end(this.unparsed, error !== undefined ? 'rpc_error' : 'result', code);
      // An error without an id (a parse error, an unknown session) answers every request of the body.
      else if (error !== undefined && id === null) for (const request of this.requests.values()) this.end(request, 'rpc_error', code);
      return undefined;
    }
    // A second answer: the first was the one judged.
    if (pending.ended || this.answered?.has(pending)) return DROP;
    if (error !== undefined) {
      this.end(pending, 'rpc_error', code);
      return undefined;
    }
    const { result } = message;
    const { method: requested } = pending.message;
    let sessionId: string | undefined;
    if (requested === 'tools/list') {
      this.context.learnTools(result);
      this.context.paramHeaders.learn(result);
    } else if (requested === 'initialize' && this.responseSession !== undefined) {
      // The session the upstream created belongs to whoever initialized it (read-request.ts refuses it to anyone else).
      const version = isObject(result) && typeof result.protocolVersion === 'string' ? result.protocolVersion : undefined;
      const client = clientOf(pending.message.params?.clientInfo);
      this.context.sessions.start(this.responseSession, client, version, ownerOf(pending.caller.identity));
      sessionId = this.responseSession;
    }
    let replacement: Json | undefined;
    if (pending.rewriters !== undefined) {
      let current = result;
      let changed = false;
      try {
        for (const guard of pending.rewriters) {
          const next = guard.rewriteResult!(pending.message, current, pending.caller);
          if (next !== undefined) {
            current = next;
            changed = true;
          }
        }
      } catch {
        this.end(pending, 'upstream_error', UNFILTERED.code);
        return { jsonrpc: '2.0', id, error: UNFILTERED };
      }
      if (changed) replacement = { ...message, result: current };
    }
    const toolError = requested === 'tools/call' && isObject(result) && result.isError === true;
    // A multi round-trip request's interim result (2026-07-28): the retry is a message of its own.
    const inputRequests = MULTI_ROUND_TRIP.has(requested) ? inputRequestKinds(result) : undefined;
    if (inputRequests !== undefined) pending.inputRequests = inputRequests;
    this.end(pending, inputRequests !== undefined ? 'input_required' : toolError ? 'tool_error' : 'result', undefined, sessionId);
    return replacement;
  }

  /** A held reply cannot be read: every held request not yet answered gets an error, written in its place. */
  private failClosed(): string[] {
    this.moveTo('failed-closed');
    const errors: string[] = [];
    for (const pending of this.requests.values()) {
      if (pending.ended || pending.rewriters === undefined) continue;
      (this.answeredHere ??= new Set()).add(idKey(pending.message.id!));
      errors.push(JSON.stringify({ jsonrpc: '2.0', id: pending.message.id, error: UNFILTERED }));
      this.end(pending, 'upstream_error', UNFILTERED.code);
    }
    return errors;
  }

  /** The one place a message of this exchange ends; McpContext.end ignores a second end. */
  private end(pending: Pending, outcome: Outcome, code: number | undefined, sessionId?: string): void {
    if (pending.ended || this.answered?.has(pending)) return;
    if (pending.rewriters !== undefined && --this.held === 0 && this.state === 'holding') this.moveTo('passing');
    if (this.endsWritten !== undefined && this.state !== 'done') {
      this.answered!.add(pending);
      this.endsWritten.push(() => this.context.end(pending, outcome, code, this.reader.bytesOut, sessionId));
    } else this.context.end(pending, outcome, code, this.reader.bytesOut, sessionId);
  }

  /** The response is over: whatever has no outcome yet gets one. */
  finish(how: ResponseEnd): void {
    if (this.state === 'done') return;
    const failure = FINISHED_BY[how];
    const failed = this.status >= 400;
    const unread = this.state === 'unreadable' || this.state === 'failed-closed';
    this.moveTo('done');
    // The held body is written (or the response failed): its messages end now, with its length.
    if (this.endsWritten !== undefined) for (const end of this.endsWritten.splice(0)) end();
    const unanswered: Outcome = failure ?? (failed || !unread ? 'upstream_error' : 'unknown');
    for (const pending of this.requests.values()) this.end(pending, unanswered, undefined);
    // Notifications end when the response does; a request among them had its id taken.
    const accepted: Outcome = failure ?? (failed ? 'upstream_error' : 'result');
    for (const pending of this.others) this.end(pending, pending.message.id === undefined ? accepted : unanswered, undefined);
    for (const response of this.origin.responses) {
      const request = this.context.sessions.answered(this.origin.caller.sessionId, idKey(response.id));
      const outcome = failure ?? (failed ? 'upstream_error' : response.error ? 'rpc_error' : 'result');
      this.end(this.pendingOf({ method: request?.method ?? 'response', id: response.id }), outcome, response.errorCode);
    }
  }

  /** A message of the body that no guard judged: the `unparsed` line, a client's answer to a server request. */
  private pendingOf(message: Pick<ClientMessage, 'method' | 'id'>): Pending {
    const { reqId, clientRequestId, caller, startedAt, bytesIn } = this.origin;
    return {
      message: { ...message, params: undefined, tool: undefined, prompt: undefined, resource: undefined, arguments: undefined },
      caller,
      reqId,
      clientRequestId,
      startedAt,
      bytesIn,
      allowedBy: [],
      rule: undefined,
      rewriters: undefined,
      inFlightKey: undefined,
      cancelled: false,
      ended: false,
    };
  }
}
