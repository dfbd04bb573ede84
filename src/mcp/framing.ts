// Cuts an MCP response into the units its messages travel in (a JSON body whole, or the events of
// a text/event-stream) and writes them back to the client: as they were, replaced, or not at
// all. It knows nothing of JSON-RPC: its UnitHandler (the McpExchange) reads each unit and says
// what is written in its place. Each unit is bounded by MCP_MAX_BODY_BYTES: a larger one is not
// kept, and the handler is told that it could not be read.

import type { OutgoingHttpHeaders } from 'node:http';
import type { ResponseReader } from '../http/proxy.js';
import { isJsonContentType } from './messages.js';
import { SseReader } from './sse.js';

/** What can be read of a response body: a JSON body, an event stream, or nothing (compressed, another type). */
export type BodyKind = 'json' | 'sse' | 'unreadable';

/**
 * How the units of a body are written.
 * - `pass`: bytes reach the client as they arrive; units are read on the side.
 * - `hold`: each unit is held until whole and written as the handler says. A JSON body is held
 *   with its headers (the proxy sets Content-Length); events one at a time, headers passing. A
 *   body that cannot be read is dropped, its headers made JSON, and replaced at the end. What is
 *   written is always what was read (the decoded text, rebuilt into events), never the raw bytes
 *   beside it; the unfinished last event of a stream is not written (clients drop it too).
 */
export type Handling = 'pass' | 'hold';

/** What is written in place of a unit: undefined, the unit as it was read; else these JSON texts (none: nothing). */
export type Replacement = readonly string[] | undefined;

/** How the response ended: whole, cut by an upstream failure, or with the client gone. */
export type ResponseEnd = 'complete' | 'upstream_failed' | 'client_gone';

export interface UnitHandler {
  /** The response's headers arrived; returns how its units are written. */
  start(statusCode: number, headers: OutgoingHttpHeaders, kind: BodyKind): Handling;
  /**
   * One whole unit: a JSON body's text or an event's data, undefined when it could not be read
   * (over the bound, or a body held that cannot be read). Under `pass` the answer is not used.
   * `named`: an event whose type is not `message`, whose data no MCP client reads as a message.
   */
  unit(text: string | undefined, named?: boolean): Replacement;
  /** The response is over; called once, after the last unit. */
  finish(how: ResponseEnd): void;
}

const NOTHING = Buffer.alloc(0);

function bodyKind(headers: OutgoingHttpHeaders): BodyKind {
  const type = headers['content-type'];
  const encoding = headers['content-encoding'];
  const contentType = typeof type === 'string' ? type : undefined;
  if (encoding !== undefined && encoding !== 'identity') return 'unreadable';
  if (contentType !== undefined && contentType.slice(0, 17).toLowerCase() === 'text/event-stream') return 'sse';
  return isJsonContentType(contentType) ? 'json' : 'unreadable';
}

/** Several JSON texts in one body are written as an array. */
function jsonBody(texts: readonly string[]): Buffer {
  return Buffer.from(texts.length === 1 ? texts[0]! : `[${texts.join(',')}]`);
}

/** An event as read: its other lines (id, event, retry, comments: resumption ids stay the upstream's), then its data. */
function eventOf(lines: readonly string[], data: readonly string[]): Buffer {
  let text = '';
  for (const line of lines) text += `${line}\n`;
  for (const line of data) text += `data: ${line}\n`;
  return Buffer.from(`${text}\n`);
}

/**
 * Whether an event's type is one MCP clients do not read as a message: the TypeScript SDK takes
 * none or `message`, the Go clients the same after trimming spaces; anything close counts as a message.
 */
function isNamed(lines: readonly string[]): boolean {
  let type = '';
  for (const line of lines) if (line === 'event' || line.startsWith('event:')) type = line.slice(6);
  type = type.trim();
  return type !== '' && type !== 'message';
}

/** An event the sidecar writes itself. */
function newEvents(texts: readonly string[]): Buffer[] {
  return texts.map((text) => Buffer.from(`event: message\ndata: ${text}\n\n`));
}

export class ResponseFramer implements ResponseReader {
  private kind: BodyKind = 'unreadable';
  private handling: Handling = 'pass';
  private sse: SseReader | undefined;
  /** The JSON body read so far; undefined once it is over the bound. */
  private body: Buffer[] | undefined = [];
  private bodyBytes = 0;
  /** Bytes written to the client so far. */
  bytesOut = 0;

  constructor(
    private readonly handler: UnitHandler,
    private readonly maxBytes: number,
  ) {}

  onStart(statusCode: number, headers: OutgoingHttpHeaders): boolean {
    this.kind = bodyKind(headers);
    this.handling = this.handler.start(statusCode, headers, this.kind);
    if (this.kind === 'sse') this.sse = new SseReader(this.maxBytes, this.handling === 'hold');
    // Held events may be rewritten or dropped: the upstream's length would no longer be the
    // body's (a plain HTTP client would wait for bytes that never come). Node chunks it instead.
    if (this.kind === 'sse' && this.handling === 'hold') delete headers['content-length'];
    if (this.handling === 'pass' || this.kind === 'sse') return true;
    if (this.kind === 'unreadable') {
      // Its replacement is JSON.
      delete headers['content-encoding'];
      headers['content-type'] = 'application/json';
    }
    return false;
  }

  onData(chunk: Buffer): Buffer | undefined {
    if (this.kind === 'sse') {
      if (this.handling === 'hold') return this.heldEvents(chunk);
      // Counted first: an answer in this chunk has been written with it.
      this.bytesOut += chunk.length;
      this.sse!.feed(chunk, this.passingEvent);
      return chunk;
    }
    if (this.kind === 'json') this.keep(chunk);
    if (this.handling === 'hold') return undefined;
    this.bytesOut += chunk.length;
    return chunk;
  }

  onEnd(): Buffer | undefined {
    let rest: Buffer | undefined;
    if (this.kind === 'json') rest = this.endOfJson();
    // A stream passed as it came reached the client whole: an event it left unfinished is read as
    // the Go clients read it. Of a held stream, that event is not dispatched, so not written.
    else if (this.kind === 'sse' && this.handling === 'pass') this.sse!.end(this.passingEvent);
    else if (this.handling === 'hold' && this.kind !== 'sse') rest = jsonBody(this.handler.unit(undefined) ?? []);
    if (rest !== undefined) this.bytesOut += rest.length;
    this.handler.finish('complete');
    return rest;
  }

  onError(): void {
    this.handler.finish('upstream_failed');
  }

  onClientGone(): void {
    this.handler.finish('client_gone');
  }

  private keep(chunk: Buffer): void {
    if (this.body === undefined) return;
    this.bodyBytes += chunk.length;
    // Copied: the chunk's memory belongs to the upstream connection's next read.
    if (this.bodyBytes > this.maxBytes) this.body = undefined;
    else this.body.push(Buffer.from(chunk));
  }

  private endOfJson(): Buffer | undefined {
    const { body } = this;
    const text = body === undefined ? undefined : body.length === 1 ? body[0]!.toString('utf8') : Buffer.concat(body).toString('utf8');
    this.body = [];
    const replacement = this.handler.unit(text);
    if (this.handling === 'pass') return undefined;
    // The text as read, not the bytes: the client gets what the handler saw.
    if (replacement === undefined) return text === undefined ? NOTHING : Buffer.from(text);
    return jsonBody(replacement);
  }

  private readonly passingEvent = (data: string | undefined, _end: number, oversized: boolean): void => {
    if (oversized) this.handler.unit(undefined);
    else if (data !== undefined && data !== '') this.handler.unit(data);
  };

  /** A chunk of a held stream: each event is written once whole, as the handler says. */
  private heldEvents(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    this.sse!.feed(chunk, (data, _end, oversized, lines) => {
      // Not kept: nothing of it passes, only what the handler writes instead.
      if (oversized) out.push(...newEvents(this.handler.unit(undefined) ?? []));
      // An event without data (a comment, a keep-alive, a priming event's id) carries no message:
      // clients do not dispatch empty data.
      else if (data === undefined || data === '') {
        if (lines.length > 0 || data === '') out.push(eventOf(lines, data === '' ? [''] : []));
      } else {
        const replacement = this.handler.unit(data, isNamed(lines));
        if (replacement === undefined) out.push(eventOf(lines, data.split('\n')));
        else if (replacement.length > 0) out.push(eventOf(lines, [replacement[0]!]), ...newEvents(replacement.slice(1)));
      }
    });
    const bytes = out.length === 1 ? out[0]! : Buffer.concat(out);
    this.bytesOut += bytes.length;
    return bytes;
  }
}
