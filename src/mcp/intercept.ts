// The request side of MCP (the proxy's Interceptor): which requests are read, the bounded body
// read, the one reading (read-request.ts) and the session's owner checked before any guard, the
// guard pipeline, and the answers the sidecar gives itself. Every message read from a body ends
// exactly once (McpContext.end): refused here, or by the McpExchange that follows its response.
// Everything that is not a POST with a JSON body (or an MCP session's GET stream) goes back to
// the proxy untouched: no body read, nothing parsed; with a guard, a body on another method is
// refused, as nothing reads it.

import type { FastifyRequest } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Forwarding, Interceptor } from '../http/proxy.js';
import type { Caller, ClientMessage, Decision, Guard } from './guard.js';
import type { Outcome } from './audit.js';
import type { McpContext, Pending } from './context.js';
import { McpExchange } from './exchange.js';
import { isJsonContentType } from './messages.js';
import { clientRequestId } from '../lib/request-target.js';
import { requestProtocolVersion } from './protocol-version.js';
import {
  BAD_SESSION_ID,
  BODY_ON_METHOD,
  INVALID_REQUEST_CODE,
  SESSION_FORBIDDEN,
  argumentProblem,
  isRefusal,
  isSessionId,
  readMessages,
  type Refusal,
} from './read-request.js';
import { ownerOf } from './sessions.js';

type Body = { kind: 'complete'; body: Buffer } | { kind: 'over'; head: Buffer | undefined } | { kind: 'gone' };

/** Reads a request body up to `maxBytes`; past it, stops reading and returns what it has. */
export function readBody(raw: IncomingMessage, maxBytes: number): Promise<Body> {
  const declared = raw.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) return Promise.resolve({ kind: 'over', head: undefined });
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const stop = (result: Body) => {
      raw.off('data', onData);
      raw.off('end', onEnd);
      raw.off('close', onClose);
      raw.off('error', onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      bytes += chunk.length;
      if (bytes > maxBytes) {
        raw.pause();
        stop({ kind: 'over', head: Buffer.concat(chunks) });
      }
    };
    const onEnd = () => stop({ kind: 'complete', body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) });
    const onClose = () => {
      if (!raw.complete) stop({ kind: 'gone' });
    };
    raw.on('data', onData);
    raw.on('end', onEnd);
    raw.on('close', onClose);
    raw.on('error', onClose);
  });
}

const PROBLEMS = {
  not_json: 'request body is not UTF-8 JSON',
  not_json_rpc: 'request body is not a JSON-RPC 2.0 message or batch',
} as const;

/** A second request with an id still in flight in its session. */
const ID_IN_FLIGHT: Refusal = {
  status: 400,
  rpcCode: INVALID_REQUEST_CODE,
  message: 'a request with this id is still in flight in this session: use a new id for each request',
  outcome: 'invalid_request',
  id: null,
};

/** Whether a request has a body, by its headers (Node reads a body only when they announce one). */
function hasBody(headers: FastifyRequest['headers']): boolean {
  return (headers['content-length'] !== undefined && headers['content-length'] !== '0') || headers['transfer-encoding'] !== undefined;
}

function answer(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | number> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

function refuseBody(res: ServerResponse, request: FastifyRequest, status: 400 | 413, description: string): number {
  // A body left unread would be read by Node to reuse the connection: close it instead.
  const headers: Record<string, string> = { 'x-request-id': request.id };
  if (status === 413 || !request.raw.complete) headers.connection = 'close';
  const body = { error: status === 413 ? 'payload_too_large' : 'invalid_request', error_description: description };
  answer(res, status, body, headers);
  return Buffer.byteLength(JSON.stringify(body));
}

/** A refusal before any guard: a JSON-RPC error with the refusal's status (README: One reading). */
function refuseReading(res: ServerResponse, request: FastifyRequest, refusal: Refusal, id: string | number | null): number {
  const headers: Record<string, string> = { 'x-request-id': request.id };
  // A body left unread would be read by Node to reuse the connection: close it instead.
  if (!request.raw.complete) headers.connection = 'close';
  const body = { jsonrpc: '2.0', id, error: { code: refusal.rpcCode, message: refusal.message } };
  answer(res, refusal.status, body, headers);
  return Buffer.byteLength(JSON.stringify(body));
}

interface Verdict {
  readonly pending: Pending;
  refusal: Exclude<Decision, { effect: 'allow' }> | undefined;
}

const GUARD_FAILED_CODE = -32603;
const GUARD_FAILED: Decision = { effect: 'deny', rpcCode: GUARD_FAILED_CODE, message: 'the request could not be judged' };
/** The JSON-RPC error a rate-limited tool call gets: implementation-defined server error range. */
export const RATE_LIMITED_CODE = -32029;

async function judge(guards: readonly Guard[], pending: Pending): Promise<Verdict> {
  const verdict: Verdict = { pending, refusal: undefined };
  for (const guard of guards) {
    let decision: Decision;
    try {
      const made = guard.judge(pending.message, pending.caller);
      decision = made instanceof Promise ? await made : made;
    } catch {
      // Fail closed: a guard that cannot decide does not allow.
      decision = GUARD_FAILED;
    }
    if ('rule' in decision && decision.rule !== undefined) pending.rule = decision.rule;
    if (decision.effect !== 'allow') {
      verdict.refusal = decision;
      return verdict;
    }
    // Settled when the message ends, however it ends.
    pending.allowedBy.push(guard);
  }
  return verdict;
}

function refusalError(verdict: Verdict, sunk: Exclude<Decision, { effect: 'allow' }>): { code: number; message: string; data?: unknown } {
  const refusal = verdict.refusal ?? sunk;
  const own = verdict.refusal !== undefined;
  const prefix = own ? '' : 'batch refused: ';
  if (refusal.effect === 'deny') return { code: refusal.rpcCode, message: `${prefix}${refusal.message}` };
  return { code: RATE_LIMITED_CODE, message: `${prefix}${refusal.message}`, data: { retryAfterSeconds: refusal.retryAfterSeconds } };
}

/** Nothing of the request is forwarded: the sidecar answers every message itself. */
function refuse(context: McpContext, res: ServerResponse, request: FastifyRequest, verdicts: Verdict[], batch: boolean): void {
  const sunk = verdicts.find((v) => v.refusal !== undefined)!.refusal!;
  const limits = verdicts.map((v) => v.refusal).filter((r): r is Extract<Decision, { effect: 'limit' }> => r?.effect === 'limit');
  const headers: Record<string, string | number> = { 'x-request-id': request.id };
  if (limits.length > 0) headers['retry-after'] = Math.max(1, Math.ceil(Math.max(...limits.map((l) => l.retryAfterSeconds))));
  const errors = verdicts
    .filter((v) => v.pending.message.id !== undefined)
    .map((v) => ({ jsonrpc: '2.0', id: v.pending.message.id, error: refusalError(v, sunk) }));
  const bytesOut = (body: unknown) => Buffer.byteLength(JSON.stringify(body));
  let body: unknown;
  if (batch && errors.length > 0) {
    body = errors;
    answer(res, 200, body, headers);
  } else if (!batch && errors.length === 1 && !(sunk.effect === 'limit' && verdicts[0]!.pending.message.method !== 'tools/call')) {
    body = errors[0];
    answer(res, 200, body, headers);
  } else if (sunk.effect === 'limit') {
    body = { error: 'rate_limited', error_description: sunk.message };
    answer(res, 429, body, headers);
  } else {
    // Only notifications: JSON-RPC has no answer for them, the transport an HTTP error.
    body = { jsonrpc: '2.0', id: null, error: { code: sunk.rpcCode, message: sunk.message } };
    answer(res, 403, body, headers);
  }
  const written = bytesOut(body);
  for (const verdict of verdicts) {
    const outcome: Outcome = (verdict.refusal ?? sunk).effect === 'deny' ? 'denied' : 'limited';
    const code = verdict.pending.message.id === undefined ? undefined : refusalError(verdict, sunk).code;
    context.end(verdict.pending, outcome, code, written);
  }
}

/** What every message of one HTTP request shares. */
interface Origin {
  readonly caller: Caller;
  readonly reqId: string;
  readonly clientRequestId: string | undefined;
  readonly startedAt: number;
  readonly bytesIn: number;
}

/** A message read from the body (or a line for a body that was not), from now until it ends (McpContext.end). */
function pendingOf(message: ClientMessage, origin: Origin, rewriters?: readonly Guard[]): Pending {
  return {
    message,
    caller: origin.caller,
    reqId: origin.reqId,
    clientRequestId: origin.clientRequestId,
    startedAt: origin.startedAt,
    bytesIn: origin.bytesIn,
    allowedBy: [],
    rule: undefined,
    rewriters,
    inFlightKey: undefined,
    cancelled: false,
    ended: false,
  };
}

/** The one line of a request whose body was not read as messages (refused before reading, or unreadable). */
const UNPARSED: ClientMessage = {
  method: 'unparsed',
  id: undefined,
  params: undefined,
  tool: undefined,
  prompt: undefined,
  resource: undefined,
  arguments: undefined,
};

export function createInterceptor(context: McpContext): Interceptor {
  const { guards } = context;
  const maxBytes = context.config.mcpMaxBodyBytes;
  const guarded = guards.length > 0;

  function rewritersOf(message: ClientMessage): readonly Guard[] | undefined {
    if (message.id === undefined) return undefined;
    const rewriters = guards.filter((g) => g.rewrites?.(message.method) === true);
    return rewriters.length > 0 ? rewriters : undefined;
  }

  /** A body no guard could judge (too large, not JSON, not JSON-RPC), refused: one `unparsed` line. */
  function refuseUnjudged(
    request: FastifyRequest,
    res: ServerResponse,
    origin: Origin,
    status: 400 | 413,
    description: string,
  ): 'answered' {
    const written = refuseBody(res, request, status, description);
    context.end(pendingOf(UNPARSED, origin), 'invalid_request', undefined, written);
    return 'answered';
  }

  /** Answers a request refused before anything of it was read as messages: one `unparsed` line. */
  function refuseUnread(request: FastifyRequest, res: ServerResponse, origin: Origin, refusal: Refusal): 'answered' {
    const written = refuseReading(res, request, refusal, refusal.id);
    context.end(pendingOf(UNPARSED, origin), refusal.outcome, refusal.rpcCode, written);
    return 'answered';
  }

  /** Answers a body read as messages, refused whole before any guard: each message ends with the refusal. */
  function refuseRead(
    request: FastifyRequest,
    res: ServerResponse,
    pendings: readonly Pending[],
    refusal: Refusal,
    batch: boolean,
  ): 'answered' {
    const only = !batch && pendings.length === 1 ? pendings[0]!.message.id : undefined;
    const written = refuseReading(res, request, refusal, only ?? null);
    for (const pending of pendings)
      context.end(pending, refusal.outcome, pending.message.id === undefined ? undefined : refusal.rpcCode, written);
    return 'answered';
  }

  async function post(request: FastifyRequest, res: ServerResponse, origin: Origin): Promise<Forwarding | 'answered'> {
    // The client may go while the guards judge (Redis is a round trip): then nothing is forwarded.
    let gone = false;
    res.once('close', () => (gone = true));
    const { caller } = origin;
    const unparsed = (head: Buffer | undefined, streamRest: boolean, bytesIn: number): Forwarding => ({
      head,
      streamRest,
      reader: new McpExchange(context, { ...origin, bytesIn, pending: [], responses: [], unparsed: true }).reader,
    });
    const read = await readBody(request.raw, maxBytes);
    if (read.kind === 'gone') {
      res.destroy();
      return 'answered';
    }
    if (read.kind === 'over') {
      if (guarded) return refuseUnjudged(request, res, origin, 413, `request body is larger than MCP_MAX_BODY_BYTES (${maxBytes} bytes)`);
      return unparsed(read.head, true, Number(request.headers['content-length'] ?? read.head?.length ?? 0));
    }
    const { body } = read;
    const sessionVersion = context.sessions.get(caller.sessionId)?.protocolVersion;
    const version = requestProtocolVersion(request.headers['mcp-protocol-version'], sessionVersion);
    const result = readMessages(body, version, context.audit !== undefined);
    const bodyOrigin = { ...origin, bytesIn: body.length };
    if (isRefusal(result)) return refuseUnread(request, res, bodyOrigin, result);
    if (result.kind === 'unreadable') {
      if (guarded) return refuseUnjudged(request, res, bodyOrigin, 400, PROBLEMS[result.problem]);
      return unparsed(body, false, body.length);
    }
    const pendings = result.messages.map((message) => pendingOf(message, bodyOrigin, rewritersOf(message)));
    // The session is its creator's: another subject's messages never reach the upstream.
    if (caller.sessionId !== undefined && !context.sessions.claim(caller.sessionId, ownerOf(caller.identity))) {
      return refuseRead(request, res, pendings, SESSION_FORBIDDEN, result.batch);
    }
    for (const pending of pendings) {
      const { message } = pending;
      const problem = message.tool === undefined ? undefined : argumentProblem(message, context.schemaOf(message.tool));
      if (problem !== undefined) return refuseRead(request, res, pendings, problem, result.batch);
    }
    if (!context.reserve(pendings)) return refuseRead(request, res, pendings, ID_IN_FLIGHT, result.batch);
    try {
      const verdicts: Verdict[] = [];
      for (const pending of pendings) verdicts.push(guarded ? await judge(guards, pending) : { pending, refusal: undefined });
      if (verdicts.some((v) => v.refusal !== undefined)) {
        refuse(context, res, request, verdicts, result.batch);
        return 'answered';
      }
      if (gone) {
        for (const pending of pendings) context.end(pending, 'cancelled', undefined, 0);
        return 'answered';
      }
      for (const { message } of pendings) {
        if (message.method === 'notifications/cancelled') context.cancel(caller.sessionId, message.params?.requestId);
      }
      return {
        head: body,
        streamRest: false,
        reader: new McpExchange(context, { ...bodyOrigin, pending: pendings, responses: result.responses, unparsed: false }).reader,
      };
    } catch (error) {
      // A bug here: nothing is forwarded, and what was read still ends (denied: it was not judged).
      for (const pending of pendings) context.end(pending, 'denied', GUARD_FAILED_CODE, 0);
      throw error;
    }
  }

  return (request, res) => {
    const method = request.method;
    const session = request.headers['mcp-session-id'];
    const sessionId = typeof session === 'string' ? session : undefined;
    const origin = (): Origin => ({
      caller: { identity: request.auth.identity!, sessionId },
      reqId: request.id,
      clientRequestId: clientRequestId(request.headers),
      startedAt: performance.now(),
      bytesIn: 0,
    });
    // An id no server issues is refused before it is kept or written anywhere.
    if (sessionId !== undefined && !isSessionId(sessionId)) return Promise.resolve(refuseUnread(request, res, origin(), BAD_SESSION_ID));
    if (method === 'POST') {
      const type = request.headers['content-type'];
      if (!isJsonContentType(type)) {
        // A body of another type cannot be judged: with a guard it never passes.
        if (guarded && hasBody(request.headers)) {
          return Promise.resolve(refuseUnjudged(request, res, origin(), 400, 'request body must be application/json'));
        }
        return undefined;
      }
      return post(request, res, origin());
    }
    // A body on another method is forwarded unread; an upstream routing by path alone would run
    // it. With a guard, nothing passes unjudged.
    if (guarded && hasBody(request.headers)) return Promise.resolve(refuseUnread(request, res, origin(), BODY_ON_METHOD));
    // GET streams and DELETE of a session: its creator's only.
    if (sessionId !== undefined && (method === 'GET' || method === 'DELETE')) {
      if (!context.sessions.claim(sessionId, ownerOf(request.auth.identity!))) {
        return Promise.resolve(refuseUnread(request, res, origin(), SESSION_FORBIDDEN));
      }
      if (method === 'DELETE') {
        context.sessions.end(sessionId);
        return undefined;
      }
    }
    // A session's GET stream carries the server's own requests and notifications. Under a guard
    // that rewrites results every GET stream is read, sessionless ones too (the legacy HTTP+SSE
    // transport's): a result there cannot be filtered and fails closed (mcp/exchange.ts).
    if (method === 'GET' && (sessionId !== undefined || context.rewriting)) {
      return {
        head: undefined,
        streamRest: false,
        reader: new McpExchange(context, { ...origin(), pending: [], responses: [], unparsed: false }).reader,
      };
    }
    return undefined;
  };
}
