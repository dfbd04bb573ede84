// Follows one HTTP exchange's response (the proxy's ResponseReader): JSON bodies and
// text/event-stream events are read as they pass, responses matched to the exchange's requests by
// JSON-RPC id, and each request's outcome recorded once. Bytes reach the client as they arrive,
// except the one response a guard rewrites (a JSON body, or the SSE event carrying that id),
// which is held, offered to the guard, and re-serialised only when the guard replaced it.
// What cannot be read (too large, compressed) passes unread, its outcome `unknown`; where a
// guard had to rewrite it, the client gets a JSON-RPC error instead (fail closed).

import type { OutgoingHttpHeaders } from 'node:http';
import type { ResponseReader } from '../http/proxy.js';
import type { Caller } from './guard.js';
import type { Outcome } from './audit.js';
import { idKey, type McpContext, type Pending } from './context.js';
import type { ClientResponse } from './messages.js';
import { isJsonContentType } from './messages.js';
import { SseReader } from './sse.js';

type Mode = 'json' | 'sse' | 'unread';
type Json = Record<string, unknown>;

const UNFILTERED = { code: -32603, message: 'the response could not be read to apply the tool policy' };
const UNMATCHED = {
  code: -32603,
  message: "a result outside its request's response cannot be checked against the tool policy (use the Streamable HTTP transport)",
};

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export interface ExchangeStart {
  readonly reqId: string;
  readonly caller: Caller;
  readonly startedAt: number;
  readonly bytesIn: number;
  /** Requests and notifications read from the body, allowed by every guard. */
  readonly pending: readonly Pending[];
  /** The client's answers to the server's own requests in this body. */
  readonly responses: readonly ClientResponse[];
  /** The body was not read (over the limit, not JSON): one line with method `unparsed`. */
  readonly unparsed: boolean;
}

export class McpExchange implements ResponseReader {
  private readonly requests = new Map<string, Pending>();
  private readonly notifications: Pending[] = [];
  private unparsed: Pending | undefined;
  private status = 0;
  private mode: Mode = 'unread';
  private sse: SseReader | undefined;
  private body: Buffer[] = [];
  private bodyBytes = 0;
  /** Something of the response could not be read: unanswered requests end `unknown`. */
  private unreadable = false;
  /** Requests whose result a guard rewrites, not yet answered: while > 0 the response is held. */
  private rewritesLeft = 0;
  private heldEvent: Buffer[] = [];
  private heldBytes = 0;
  private dropping = false;
  /** Ids the sidecar answered itself (fail closed): the upstream's answers to them never pass. */
  private answeredHere: Set<string> | undefined;
  private failClosed = false;
  private bytesOut = 0;
  /** Mcp-Session-Id of the response (initialize creates it). */
  private responseSession: string | undefined;
  private done = false;

  constructor(
    private readonly context: McpContext,
    private readonly start: ExchangeStart,
  ) {
    for (const pending of start.pending) {
      if (pending.message.id === undefined) this.notifications.push(pending);
      else {
        this.requests.set(idKey(pending.message.id), pending);
        context.track(pending);
        if (pending.rewriters !== undefined) this.rewritesLeft++;
      }
    }
    if (start.unparsed) {
      this.unparsed = {
        message: {
          method: 'unparsed',
          id: undefined,
          params: undefined,
          tool: undefined,
          prompt: undefined,
          resource: undefined,
          arguments: undefined,
        },
        caller: start.caller,
        reqId: start.reqId,
        startedAt: start.startedAt,
        bytesIn: start.bytesIn,
        allowedBy: [],
        rule: undefined,
        rewriters: undefined,
        inFlightKey: undefined,
        cancelled: false,
        ended: false,
      };
    }
  }

  private get holding(): boolean {
    return this.rewritesLeft > 0;
  }

  onStart(statusCode: number, headers: OutgoingHttpHeaders): boolean {
    this.status = statusCode;
    const session = headers['mcp-session-id'];
    if (typeof session === 'string') this.responseSession = session;
    const type = headers['content-type'];
    const encoding = headers['content-encoding'];
    const contentType = typeof type === 'string' ? type : undefined;
    if (encoding !== undefined && encoding !== 'identity') this.mode = 'unread';
    else if (contentType !== undefined && contentType.slice(0, 17).toLowerCase() === 'text/event-stream') {
      this.mode = 'sse';
      this.sse = new SseReader(this.context.config.mcpMaxBodyBytes);
    } else if (isJsonContentType(contentType)) this.mode = 'json';
    if (this.mode === 'unread') this.unreadable = true;
    if (!this.holding) return true;
    if (this.mode === 'json') return false;
    if (this.mode === 'unread' && statusCode === 200) {
      // A result to filter in a form we cannot read: the client gets errors instead.
      this.failClosed = true;
      delete headers['content-encoding'];
      headers['content-type'] = 'application/json';
      return false;
    }
    return true;
  }

  onData(chunk: Buffer): Buffer | undefined {
    if (this.failClosed) return undefined;
    if (this.mode === 'json') {
      if (!this.unreadable) {
        this.bodyBytes += chunk.length;
        if (this.bodyBytes > this.context.config.mcpMaxBodyBytes) {
          this.unreadable = true;
          this.body = [];
        } else this.body.push(Buffer.from(chunk));
      }
      if (this.holding) {
        // Held whole; too large to read means it cannot be filtered: fail closed at the end.
        if (this.unreadable) this.failClosed = true;
        return undefined;
      }
    } else if (this.mode === 'sse') {
      // With a guard that rewrites results, every event is read whole before it passes: a result
      // arriving on a stream other than its request's (the legacy HTTP+SSE transport answers on
      // its GET stream; a resumed stream replays) cannot be filtered, and must not pass unread.
      if (this.holding || this.context.rewriting) return this.heldSseData(chunk);
      // Counted first: an answer in this chunk has been written with it.
      this.bytesOut += chunk.length;
      this.sse!.feed(chunk, this.passingEvent);
      return chunk;
    }
    this.bytesOut += chunk.length;
    return chunk;
  }

  onEnd(): Buffer | undefined {
    let rest: Buffer | undefined;
    if (this.failClosed) rest = this.errorBody();
    else if (this.mode === 'json') rest = this.endJson();
    else if (this.heldEvent.length > 0) rest = Buffer.concat(this.heldEvent);
    if (rest !== undefined) this.bytesOut += rest.length;
    this.finish(undefined);
    return rest;
  }

  onError(): void {
    this.finish('upstream_error');
  }

  onClientGone(): void {
    this.finish('cancelled');
  }

  private readonly passingEvent = (data: string | undefined, _end: number, oversized: boolean): void => {
    if (oversized) this.unreadable = true;
    else if (data !== undefined) this.readEvent(data);
  };

  /** An SSE chunk while a response is held: events pass as they complete, the held one rewritten. */
  private heldSseData(chunk: Buffer): Buffer | undefined {
    const out: Buffer[] = [];
    let start = 0;
    this.sse!.feed(chunk, (data, end, oversized) => {
      const piece = chunk.subarray(start, end);
      start = end;
      const dropped = this.dropping || oversized;
      const raw = this.heldEvent.length > 0 ? Buffer.concat([...this.heldEvent, piece]) : piece;
      this.heldEvent = [];
      this.heldBytes = 0;
      this.dropping = false;
      if (dropped) {
        this.unreadable = true;
        if (this.holding) out.push(this.errorEvents());
        return;
      }
      if (this.holding || this.answeredHere !== undefined || this.context.rewriting) out.push(this.heldEventOutput(raw, data));
      else {
        if (data !== undefined) this.readEvent(data);
        out.push(raw);
      }
    });
    if (start < chunk.length) {
      const tail = chunk.subarray(start);
      if (!this.holding && this.heldEvent.length === 0 && this.answeredHere === undefined && !this.context.rewriting) out.push(tail);
      else if (!this.dropping) {
        this.heldBytes += tail.length;
        if (this.heldBytes > this.context.config.mcpMaxBodyBytes) {
          this.heldEvent = [];
          this.dropping = true;
        } else this.heldEvent.push(Buffer.from(tail));
      }
    }
    const bytes = out.length === 1 ? out[0]! : Buffer.concat(out);
    this.bytesOut += bytes.length;
    return bytes;
  }

  /** One whole event while holding: its bytes unchanged, or rewritten when it carries a held result. */
  private heldEventOutput(raw: Buffer, data: string | undefined): Buffer {
    if (data === undefined) return raw;
    let value: unknown;
    try {
      value = JSON.parse(data);
    } catch {
      return raw;
    }
    const messages: unknown[] = Array.isArray(value) ? value : [value];
    let changed = false;
    let suppressed = false;
    const replaced = messages.map((message: unknown) => {
      if (isObject(message) && this.isAnsweredHere(message.id)) {
        suppressed = true;
        return message;
      }
      const replacement = this.readMessage(message);
      if (replacement !== undefined) changed = true;
      return replacement ?? message;
    });
    if (suppressed) return Buffer.alloc(0);
    if (!changed) return raw;
    // Keep the event's other fields (id, event, retry): resumption ids must stay what the upstream sent.
    const kept = raw
      .toString('utf8')
      .split(/\r\n|\r|\n/)
      .filter((line) => line !== '' && !line.startsWith('data'));
    const json = JSON.stringify(Array.isArray(value) ? replaced : replaced[0]);
    return Buffer.from(`${kept.map((line) => `${line}\n`).join('')}data: ${json}\n\n`);
  }

  private isAnsweredHere(id: unknown): boolean {
    return this.answeredHere !== undefined && (typeof id === 'string' || typeof id === 'number') && this.answeredHere.has(idKey(id));
  }

  private readEvent(data: string): void {
    let value: unknown;
    try {
      value = JSON.parse(data);
    } catch {
      this.unreadable = true;
      return;
    }
    if (Array.isArray(value)) for (const message of value) this.readMessage(message);
    else this.readMessage(value);
  }

  private endJson(): Buffer | undefined {
    const held = this.holding;
    if (this.unreadable) return held ? this.errorBody() : undefined;
    const text = this.body.length === 1 ? this.body[0]!.toString('utf8') : Buffer.concat(this.body).toString('utf8');
    this.body = [];
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.unreadable = true;
      return held ? (this.status < 300 ? this.errorBody() : Buffer.from(text)) : undefined;
    }
    if (Array.isArray(value)) {
      let changed = false;
      const replaced = (value as unknown[]).map((message: unknown) => {
        const replacement = this.readMessage(message);
        if (replacement !== undefined) changed = true;
        return replacement ?? message;
      });
      return held ? Buffer.from(changed ? JSON.stringify(replaced) : text) : undefined;
    }
    const replacement = this.readMessage(value);
    return held ? Buffer.from(replacement !== undefined ? JSON.stringify(replacement) : text) : undefined;
  }

  /** One message from the upstream; returns a replacement when a guard rewrote its result. */
  private readMessage(message: unknown): Json | undefined {
    if (!isObject(message)) return undefined;
    const { id, method } = message;
    if (typeof method === 'string') {
      // A request of the server (sampling, elicitation, roots): its answer comes in a later POST.
      if (typeof id === 'string' || typeof id === 'number')
        this.context.sessions.serverRequest(this.start.caller.sessionId, idKey(id), method);
      return undefined;
    }
    const error = isObject(message.error) ? message.error : undefined;
    if (error === undefined && !('result' in message)) return undefined;
    const code = typeof error?.code === 'number' ? error.code : undefined;
    const pending = typeof id === 'string' || typeof id === 'number' ? this.requests.get(idKey(id)) : undefined;
    if (pending === undefined) {
      // A result for no request of this exchange: its method is unknown here, so no guard could
      // filter it; under a rewriting guard it is answered as an error instead (fail closed).
      if (this.context.rewriting && error === undefined && (typeof id === 'string' || typeof id === 'number')) {
        return { jsonrpc: '2.0', id, error: UNMATCHED };
      }
      if (this.unparsed !== undefined) this.end(this.unparsed, error !== undefined ? 'rpc_error' : 'result', code);
      // An error without an id (a parse error, an unknown session) answers every request of the body.
      else if (error !== undefined && id === null) for (const request of this.requests.values()) this.end(request, 'rpc_error', code);
      return undefined;
    }
    if (pending.ended) return undefined;
    if (error !== undefined) {
      this.end(pending, 'rpc_error', code);
      return undefined;
    }
    const { result } = message;
    const { method: requested } = pending.message;
    let sessionId: string | undefined;
    if (requested === 'tools/list') this.context.learnTools(result);
    else if (requested === 'initialize' && this.responseSession !== undefined) {
      const info = pending.message.params?.clientInfo;
      const client =
        isObject(info) && typeof info.name === 'string'
          ? `${info.name}/${typeof info.version === 'string' ? info.version : ''}`
          : undefined;
      const version = isObject(result) && typeof result.protocolVersion === 'string' ? result.protocolVersion : undefined;
      this.context.sessions.start(this.responseSession, client, version);
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
    this.end(pending, toolError ? 'tool_error' : 'result', undefined, sessionId);
    return replacement;
  }

  private end(pending: Pending, outcome: Outcome, code: number | undefined, sessionId?: string): void {
    if (pending.ended) return;
    if (pending.rewriters !== undefined) this.rewritesLeft--;
    this.context.end(pending, outcome, code, this.bytesOut, sessionId);
  }

  /** Errors for every held request not yet answered, marked answered here. */
  private unfilteredErrors(): Json[] {
    const errors: Json[] = [];
    for (const pending of this.requests.values()) {
      if (pending.ended || pending.rewriters === undefined) continue;
      (this.answeredHere ??= new Set()).add(idKey(pending.message.id!));
      errors.push({ jsonrpc: '2.0', id: pending.message.id, error: UNFILTERED });
      this.end(pending, 'upstream_error', UNFILTERED.code);
    }
    return errors;
  }

  private errorBody(): Buffer {
    const errors = this.unfilteredErrors();
    return Buffer.from(JSON.stringify(errors.length === 1 ? errors[0] : errors));
  }

  private errorEvents(): Buffer {
    return Buffer.from(
      this.unfilteredErrors()
        .map((error) => `event: message\ndata: ${JSON.stringify(error)}\n\n`)
        .join(''),
    );
  }

  /** The exchange is over: whatever has no outcome yet gets one. */
  private finish(failure: Outcome | undefined): void {
    if (this.done) return;
    this.done = true;
    const failed = this.status >= 400;
    const unanswered: Outcome = failure ?? (failed ? 'upstream_error' : this.unreadable ? 'unknown' : 'upstream_error');
    for (const pending of this.requests.values()) this.end(pending, unanswered, undefined);
    const accepted: Outcome = failure ?? (failed ? 'upstream_error' : 'result');
    for (const pending of this.notifications) this.end(pending, accepted, undefined);
    if (this.unparsed !== undefined) this.end(this.unparsed, accepted, undefined);
    for (const response of this.start.responses) {
      const request = this.context.sessions.answered(this.start.caller.sessionId, idKey(response.id));
      this.context.record(
        {
          method: request?.method ?? 'response',
          id: response.id,
          tool: undefined,
          prompt: undefined,
          resource: undefined,
          arguments: undefined,
        },
        this.start.caller,
        this.start.reqId,
        this.start.startedAt,
        failure ?? (failed ? 'upstream_error' : response.error ? 'rpc_error' : 'result'),
        response.errorCode,
        undefined,
        this.start.bytesIn,
        this.bytesOut,
      );
    }
  }
}
