// The request side of MCP (the proxy's Interceptor): which requests are read, the bounded body
// read, the one reading (read-request.ts) and the session's owner checked before any guard, the
// guard pipeline, and the answers the sidecar gives itself. Every message read from a body ends
// exactly once (McpContext.end): refused here, or by the McpExchange that follows its response.
// Everything that is not a POST with a JSON body (or an MCP session's GET stream) goes back to
// the proxy untouched: no body read, nothing parsed; with a guard, a body on another method is
// refused, as nothing reads it. The one reading runs for both eras (2025 sessions, 2026-07-28
// stateless); a 2026-07-28 request's Mcp-* headers are then checked against the messages it read
// (request-metadata.ts), still before any guard.

import type { FastifyRequest } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Forwarding, Interceptor } from '../http/proxy.js';
import type { Caller, ClientMessage, Decision, Guard } from './guard.js';
import type { Outcome } from './audit.js';
import type { McpContext, Pending } from './context.js';
import type { ReadBudget } from './read-budget.js';
import { McpExchange } from './exchange.js';
import { isJsonContentType, methodLabel } from './messages.js';
import type { MessageTrace } from '../tracing/mcp-trace.js';
import { clientRequestId } from '../lib/request-target.js';
import { OWN_ERRORS, RPC_CODES } from '../lib/errors.js';
import { CLOSE, writeError, type ErrorBody } from '../lib/error-response.js';
import { STATELESS_METHODS, eraOf, isStatelessVersion, requestProtocolVersion } from './protocol-version.js';
import { checkRequestMetadata, type HeaderRefusal } from './request-metadata.js';
import {
  BAD_SESSION_ID,
  BODY_ON_METHOD,
  SESSION_FORBIDDEN,
  argumentProblem,
  isRefusal,
  isSessionId,
  readMessages,
  type Refusal,
} from './read-request.js';
import { ownerOf } from './sessions.js';
import { resourceMetadataUrl } from '../lib/resource-metadata.js';

type Body =
  | { kind: 'complete'; body: Buffer; release: () => void }
  | { kind: 'over'; head: Buffer | undefined }
  /** Too many reads waiting already: nothing of it was read. */
  | { kind: 'busy' }
  | { kind: 'gone' };

/**
 * Reads a request body up to `maxBytes`; past it, stops reading and returns what it has. The
 * read waits for its place in the shared budget first (read-budget.ts). A whole body keeps its
 * own size of it until the caller calls `release`: the body and what is parsed from it stay in
 * memory until the upstream has it, or the request is refused. Anything else gives its place
 * back at once.
 */
export async function readBody(raw: IncomingMessage, maxBytes: number, budget: ReadBudget): Promise<Body> {
  const declared = raw.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) return { kind: 'over', head: undefined };
  const bytes = declared !== undefined ? Number(declared) : maxBytes;
  if (budget.full(bytes)) return { kind: 'busy' };
  const admitted = await budget.admit(bytes, {
    onCancel: (cancel) => raw.once('close', () => (raw.complete ? undefined : cancel())),
  });
  if (!admitted) return { kind: 'gone' };
  let kept = 0;
  try {
    const result = await new Promise<Body>((resolve) => {
      const chunks: Buffer[] = [];
      let read = 0;
      const stop = (result: Body) => {
        raw.off('data', onData);
        raw.off('end', onEnd);
        raw.off('close', onClose);
        raw.off('error', onClose);
        resolve(result);
      };
      const onData = (chunk: Buffer) => {
        chunks.push(chunk);
        read += chunk.length;
        if (read > maxBytes) {
          raw.pause();
          stop({ kind: 'over', head: Buffer.concat(chunks) });
        }
      };
      const onEnd = () => {
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        kept = body.length;
        let released = false;
        const release = () => {
          if (!released) budget.release(kept);
          released = true;
        };
        stop({ kind: 'complete', body, release });
      };
      const onClose = () => {
        if (!raw.complete) stop({ kind: 'gone' });
      };
      // Gone while waiting for its place: nothing more will come.
      if (raw.destroyed && !raw.complete) return stop({ kind: 'gone' });
      raw.on('data', onData);
      raw.on('end', onEnd);
      raw.on('close', onClose);
      raw.on('error', onClose);
    });
    return result;
  } finally {
    // Admitted for its declared size (or MCP_MAX_BODY_BYTES): what the body did not take goes back now.
    budget.release(bytes - kept);
  }
}

const BUSY = 'too many request bodies are being read at once: send it again shortly';

const PROBLEMS = {
  not_json: 'request body is not UTF-8 JSON',
  not_json_rpc: 'request body is not a JSON-RPC 2.0 message or batch',
} as const;
/** The JSON-RPC code of each, for a 2026-07-28 request's answer. */
const PROBLEM_CODES: Record<keyof typeof PROBLEMS, number> = {
  not_json: RPC_CODES.parseError,
  not_json_rpc: RPC_CODES.invalidRequest,
};

/** A POST that names MCP 2026-07-28 or later in MCP-Protocol-Version: its errors are JSON-RPC errors. */
function statelessByHeader(request: FastifyRequest): boolean {
  const version = request.headers['mcp-protocol-version'];
  return typeof version === 'string' && isStatelessVersion(version);
}

/** A second request with an id still in flight in its session. */
const ID_IN_FLIGHT: Refusal = {
  status: 400,
  rpcCode: RPC_CODES.requestRefused,
  message: 'a request with this id is still in flight in this session: use a new id for each request',
  outcome: 'invalid_request',
  id: null,
};

/**
 * The session of the legacy HTTP+SSE transport (2024-11-05), named in the query of the endpoint
 * its GET stream gave: `?sessionId=` (TypeScript SDK), `?session_id=` (Python SDK), `?sessionid=`
 * (Go SDK). Bound to its first user like any session the sidecar did not see created.
 */
function legacySessionOf(url: string): string | undefined {
  const query = url.indexOf('?');
  if (query === -1 || !url.includes('ession', query)) return undefined;
  const params = new URLSearchParams(url.slice(query + 1));
  return params.get('sessionId') ?? params.get('session_id') ?? params.get('sessionid') ?? undefined;
}

/** Whether a request has a body, by its headers (Node reads a body only when they announce one). */
function hasBody(headers: FastifyRequest['headers']): boolean {
  return (headers['content-length'] !== undefined && headers['content-length'] !== '0') || headers['transfer-encoding'] !== undefined;
}

/** A JSON-RPC answer of the sidecar's own (its HTTP error bodies go through lib/error-response.ts). */
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

function refuseBody(
  res: ServerResponse,
  request: FastifyRequest,
  status: 400 | 413 | 503,
  description: string,
  rpcCode: number = RPC_CODES.invalidRequest,
): number {
  // A body left unread would be read by Node to reuse the connection: close it instead.
  const close = status !== 400 || !request.raw.complete;
  const retryAfter = status === 503 ? { 'retry-after': '1' } : undefined;
  // A 2026-07-28 client takes a 400 without a JSON-RPC error for an older server's, and would fall
  // back to initialize: its requests get JSON-RPC errors.
  if (statelessByHeader(request)) {
    const headers: Record<string, string> = { 'x-request-id': request.id, ...retryAfter };
    if (close) headers.connection = 'close';
    const body = { jsonrpc: '2.0', id: null, error: { code: rpcCode, message: description } };
    answer(res, status, body, headers);
    return Buffer.byteLength(JSON.stringify(body));
  }
  const own = status === 413 ? OWN_ERRORS.body_too_large : status === 503 ? OWN_ERRORS.body_read_busy : OWN_ERRORS.body_not_judged;
  const body: ErrorBody = { error: own.error, error_description: description };
  writeError(res, request.id, status, body, { connection: close ? CLOSE : undefined, headers: retryAfter });
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

/** A message after its guards: the first refusal among their decisions, if any. */
interface Judged {
  readonly pending: Pending;
  refusal: Exclude<Decision, { effect: 'allow' }> | undefined;
}

const GUARD_FAILED_CODE = RPC_CODES.notJudged;
const GUARD_FAILED: Decision = { effect: 'deny', rpcCode: GUARD_FAILED_CODE, message: 'the request could not be judged' };
/** The JSON-RPC error a rate-limited tool call gets (lib/errors.ts RPC_CODES). */
export const RATE_LIMITED_CODE = RPC_CODES.rateLimited;

async function judge(guards: readonly Guard[], pending: Pending): Promise<Judged> {
  const judgedMessage: Judged = { pending, refusal: undefined };
  for (const guard of guards) {
    let decision: Decision;
    try {
      // With tracing, each decision is a span under the message's.
      const made =
        pending.trace === undefined
          ? guard.judge(pending.message, pending.caller)
          : pending.trace.judge(guard, pending.message, pending.caller);
      decision = made instanceof Promise ? await made : made;
    } catch {
      // Fail closed: a guard that cannot decide does not allow.
      decision = GUARD_FAILED;
    }
    if ('rule' in decision && decision.rule !== undefined) pending.rule = decision.rule;
    if (decision.effect !== 'allow') {
      judgedMessage.refusal = decision;
      return judgedMessage;
    }
    // Settled when the message ends, however it ends.
    pending.allowedBy.push(guard);
  }
  return judgedMessage;
}

function refusalError(
  judgedMessage: Judged,
  sunk: Exclude<Decision, { effect: 'allow' }>,
): { code: number; message: string; data?: unknown } {
  const refusal = judgedMessage.refusal ?? sunk;
  const own = judgedMessage.refusal !== undefined;
  const prefix = own ? '' : 'batch refused: ';
  if (refusal.effect === 'deny') return { code: refusal.rpcCode, message: `${prefix}${refusal.message}` };
  return { code: RATE_LIMITED_CODE, message: `${prefix}${refusal.message}`, data: { retryAfterSeconds: refusal.retryAfterSeconds } };
}

/**
 * A 2026-07-28 request the tool policy refused, for a method that revision does not define (removed
 * ones such as logging/setLevel, or any other): a server of that revision answers such a method 404
 * and -32601, and so does the sidecar, the method not being served to this caller. (Its clients
 * take any other answer for a server that does not speak the revision.)
 */
function notServed(judgedMessage: Judged, stateless: boolean): boolean {
  const { message } = judgedMessage.pending;
  return stateless && judgedMessage.refusal?.effect === 'deny' && message.id !== undefined && !STATELESS_METHODS.has(message.method);
}

/** Nothing of the request is forwarded: the sidecar answers every message itself. */
function refuse(
  context: McpContext,
  res: ServerResponse,
  request: FastifyRequest,
  judged: Judged[],
  batch: boolean,
  stateless: boolean,
): void {
  const sunk = judged.find((v) => v.refusal !== undefined)!.refusal!;
  const limits = judged.map((v) => v.refusal).filter((r): r is Extract<Decision, { effect: 'limit' }> => r?.effect === 'limit');
  const headers: Record<string, string | number> = { 'x-request-id': request.id };
  if (limits.length > 0) headers['retry-after'] = Math.max(1, Math.ceil(Math.max(...limits.map((l) => l.retryAfterSeconds))));
  const errors = judged
    .filter((v) => v.pending.message.id !== undefined)
    .map((v) => ({ jsonrpc: '2.0', id: v.pending.message.id, error: refusalError(v, sunk) }));
  const bytesOut = (body: unknown) => Buffer.byteLength(JSON.stringify(body));
  // Refused for scopes alone (every refusal a policy denial naming the scopes a step-up brings):
  // the MCP authorization spec's 403 insufficient_scope, with every scope the request needs in
  // one challenge, so that a client can ask its authorization server for them and retry.
  const refusals = judged.map((v) => v.refusal).filter((r) => r !== undefined);
  const stepUp = refusals.every((r) => r.effect === 'deny' && r.scopes !== undefined)
    ? [...new Set(refusals.flatMap((r) => (r as { scopes: readonly string[] }).scopes))]
    : undefined;
  let body: unknown;
  let codes: ((judgedMessage: Judged) => number | undefined) | undefined;
  if (stepUp !== undefined) {
    const scope = stepUp.join(' ');
    const metadata = resourceMetadataUrl(context.config.resourceUrl);
    const description = `the token lacks a scope this request needs (${scope})`;
    headers['www-authenticate'] =
      `Bearer error="insufficient_scope", scope="${scope}", resource_metadata="${metadata}", error_description="${description}"`;
    body = { error: 'insufficient_scope', error_description: description, scope };
    answer(res, 403, body, headers);
  } else if (!batch && errors.length === 1 && notServed(judged[0]!, stateless)) {
    const { message } = judged[0]!.pending;
    const error = {
      code: RPC_CODES.methodNotFound,
      message: `Method not found: ${message.method} is not served to this caller (tool policy)`,
    };
    body = { jsonrpc: '2.0', id: message.id, error };
    codes = () => error.code;
    answer(res, 404, body, headers);
  } else if (batch && errors.length > 0) {
    body = errors;
    answer(res, 200, body, headers);
  } else if (!batch && errors.length === 1 && !(sunk.effect === 'limit' && judged[0]!.pending.message.method !== 'tools/call')) {
    body = errors[0];
    answer(res, 200, body, headers);
  } else if (sunk.effect === 'limit' && stateless && errors.length === 1) {
    // 429 as for any request that is not a tool call, with the JSON-RPC error a 2026-07-28 client reads.
    body = errors[0];
    answer(res, 429, body, headers);
  } else if (sunk.effect === 'limit') {
    const limited: ErrorBody = { error: OWN_ERRORS.rate_limited.error, error_description: sunk.message };
    body = limited;
    writeError(res, request.id, OWN_ERRORS.rate_limited.status, limited, { headers: { 'retry-after': String(headers['retry-after']) } });
  } else {
    // Only notifications: JSON-RPC has no answer for them, the transport an HTTP error.
    body = { jsonrpc: '2.0', id: null, error: { code: sunk.rpcCode, message: sunk.message } };
    answer(res, 403, body, headers);
  }
  const written = bytesOut(body);
  for (const judgedMessage of judged) {
    const outcome: Outcome = (judgedMessage.refusal ?? sunk).effect === 'deny' ? 'denied' : 'limited';
    const code =
      judgedMessage.pending.message.id === undefined ? undefined : (codes?.(judgedMessage) ?? refusalError(judgedMessage, sunk).code);
    context.end(judgedMessage.pending, outcome, code, written);
  }
}

/** A message of a 2026-07-28 POST whose headers disagree with it, and how. */
interface Mismatch {
  readonly message: ClientMessage;
  readonly refusal: HeaderRefusal;
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
function pendingOf(message: ClientMessage, origin: Origin, rewriters?: readonly Guard[], trace?: MessageTrace): Pending {
  return {
    message,
    trace,
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
    const rewriters = guards.filter((g) => g.rewrites?.(message.method, message) === true);
    return rewriters.length > 0 ? rewriters : undefined;
  }

  /** A body no guard could judge (too large, not JSON, not JSON-RPC), refused: one `unparsed` line. */
  function refuseUnjudged(
    request: FastifyRequest,
    res: ServerResponse,
    origin: Origin,
    status: 400 | 413 | 503,
    description: string,
    rpcCode?: number,
  ): 'answered' {
    const written = refuseBody(res, request, status, description, rpcCode);
    context.end(pendingOf(UNPARSED, origin), status === 503 ? 'limited' : 'invalid_request', undefined, written);
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

  /** The first message its headers disagree with (Mcp-Param-* checked where a listing marked the tool's arguments). */
  function headerMismatchIn(request: FastifyRequest, pendings: readonly Pending[]): Mismatch | undefined {
    for (const { message } of pendings) {
      const bindings = message.method === 'tools/call' ? context.paramHeaders.of(message.tool) : undefined;
      const refusal = checkRequestMetadata(request.headers, message, bindings);
      if (refusal !== undefined) return { message, refusal };
    }
    return undefined;
  }

  /** 400 with HeaderMismatch (or Invalid params for a missing _meta version) naming the header; nothing forwarded. */
  function refuseMismatch(request: FastifyRequest, res: ServerResponse, pendings: readonly Pending[], mismatch: Mismatch): 'answered' {
    const { message, refusal } = mismatch;
    const body = { jsonrpc: '2.0', id: message.id ?? null, error: { code: refusal.rpcCode, message: refusal.message } };
    const headers: Record<string, string> = { 'x-request-id': request.id };
    if (!request.raw.complete) headers.connection = 'close';
    answer(res, 400, body, headers);
    context.metrics.headerMismatches.inc({ header: refusal.header });
    const written = Buffer.byteLength(JSON.stringify(body));
    for (const pending of pendings)
      context.end(pending, 'header_mismatch', pending.message.id === undefined ? undefined : refusal.rpcCode, written);
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
    const read = await readBody(request.raw, maxBytes, context.readBudget);
    if (read.kind === 'gone') {
      res.destroy();
      return 'answered';
    }
    if (read.kind === 'busy') {
      // Refused, to be sent again, with or without a guard: passed unread, a call would go
      // unaudited for anyone who fills the line first.
      const bytesIn = Number(request.headers['content-length'] ?? 0);
      return refuseUnjudged(request, res, { ...origin, bytesIn }, 503, BUSY, RPC_CODES.notJudged);
    }
    if (read.kind === 'over') {
      const bytesIn = Number(request.headers['content-length'] ?? read.head?.length ?? 0);
      if (guarded) {
        return refuseUnjudged(
          request,
          res,
          { ...origin, bytesIn },
          413,
          `request body is larger than MCP_MAX_BODY_BYTES (${maxBytes} bytes)`,
        );
      }
      return unparsed(read.head, true, bytesIn);
    }
    const { body, release } = read;
    if (gone) release();
    else res.once('close', release);
    const sessionVersion = context.sessions.get(caller.sessionId)?.protocolVersion;
    const version = requestProtocolVersion(request.headers['mcp-protocol-version'], sessionVersion);
    const result = readMessages(body, version, context.audit !== undefined);
    const bodyOrigin = { ...origin, bytesIn: body.length };
    if (isRefusal(result)) return refuseUnread(request, res, bodyOrigin, result);
    if (result.kind === 'unreadable') {
      if (guarded) return refuseUnjudged(request, res, bodyOrigin, 400, PROBLEMS[result.problem], PROBLEM_CODES[result.problem]);
      return unparsed(body, false, body.length);
    }
    // With tracing, a span for each message (tracing/mcp-trace.ts).
    const traces = request.trace?.messages(result.messages, caller, {
      protocolVersion: version,
      listed: (tool) => context.toolLabel(tool) !== 'other',
      label: methodLabel,
    });
    const pendings = result.messages.map((message, i) => pendingOf(message, bodyOrigin, rewritersOf(message), traces?.[i]));
    const header = request.headers['mcp-protocol-version'];
    const stateless =
      eraOf(
        typeof header === 'string' ? header : undefined,
        result.messages.some((m) => m.meta?.protocolVersion !== undefined),
      ) === 'stateless';
    if (stateless) {
      // The headers a 2026-07-28 request mirrors its body into must say what the messages read
      // from it say, before anything is judged by them.
      const mismatch = headerMismatchIn(request, pendings);
      if (mismatch !== undefined) return refuseMismatch(request, res, pendings, mismatch);
    }
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
      const judged: Judged[] = [];
      for (const pending of pendings) judged.push(guarded ? await judge(guards, pending) : { pending, refusal: undefined });
      if (judged.some((v) => v.refusal !== undefined)) {
        refuse(context, res, request, judged, result.batch, stateless);
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
        reader: new McpExchange(context, {
          ...bodyOrigin,
          pending: pendings,
          responses: result.responses,
          unparsed: false,
          delivered: release,
        }).reader,
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
    const sessionId = typeof session === 'string' ? session : legacySessionOf(request.url);
    const version = request.headers['mcp-protocol-version'];
    const origin = (): Origin => ({
      caller: { identity: request.auth.identity!, sessionId, protocolVersion: typeof version === 'string' ? version : undefined },
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
