// The request side of MCP (the proxy's Interceptor): which requests are read, the bounded body
// read, the guard pipeline, and the answers the sidecar gives itself. Everything that is not a
// POST with a JSON body (or an MCP session's GET stream) goes back to the proxy untouched: no
// body read, nothing parsed.

import type { FastifyRequest } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Forwarding, Interceptor } from '../http/proxy.js';
import type { Caller, ClientMessage, Decision, Guard } from './guard.js';
import type { Outcome } from './audit.js';
import type { McpContext, Pending } from './context.js';
import { McpExchange } from './exchange.js';
import { isJsonContentType, parseBody, type BodyProblem, type ParsedBody } from './messages.js';
import { RPC_CODES } from '../lib/errors.js';
import { STATELESS_METHODS, eraOf, isStatelessVersion } from './protocol-version.js';
import { checkRequestMetadata, type HeaderRefusal } from './request-metadata.js';

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

const PROBLEMS: Record<BodyProblem, string> = {
  not_json: 'request body is not UTF-8 JSON',
  duplicate_keys: 'request body names a JSON member twice',
  not_json_rpc: 'request body is not a JSON-RPC 2.0 message or batch',
};
/** The JSON-RPC code of each, for a 2026-07-28 request's answer. */
const PROBLEM_CODES: Record<BodyProblem, number> = {
  not_json: -32700,
  duplicate_keys: RPC_CODES.invalidRequest,
  not_json_rpc: RPC_CODES.invalidRequest,
};

/** A POST that names MCP 2026-07-28 or later in MCP-Protocol-Version: its errors are JSON-RPC errors. */
function statelessByHeader(request: FastifyRequest): boolean {
  const version = request.headers['mcp-protocol-version'];
  return typeof version === 'string' && isStatelessVersion(version);
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

function refuseBody(
  res: ServerResponse,
  request: FastifyRequest,
  status: 400 | 413,
  description: string,
  rpcCode: number = RPC_CODES.invalidRequest,
): 'answered' {
  // A body left unread would be read by Node to reuse the connection: close it instead.
  const headers: Record<string, string> = { 'x-request-id': request.id };
  if (status === 413 || !request.raw.complete) headers.connection = 'close';
  // A 2026-07-28 client takes a 400 without a JSON-RPC error for an older server's, and would fall
  // back to initialize: its requests get JSON-RPC errors.
  const body = statelessByHeader(request)
    ? { jsonrpc: '2.0', id: null, error: { code: rpcCode, message: description } }
    : { error: status === 413 ? 'payload_too_large' : 'invalid_request', error_description: description };
  answer(res, status, body, headers);
  return 'answered';
}

interface Verdict {
  readonly message: ClientMessage;
  readonly allowedBy: Guard[];
  rule: string | undefined;
  refusal: Exclude<Decision, { effect: 'allow' }> | undefined;
}

const GUARD_FAILED: Decision = { effect: 'deny', rpcCode: RPC_CODES.notJudged, message: 'the request could not be judged' };
/** The JSON-RPC error a rate-limited tool call gets (lib/errors.ts RPC_CODES). */
export const RATE_LIMITED_CODE = RPC_CODES.rateLimited;

async function judge(guards: readonly Guard[], message: ClientMessage, caller: Caller): Promise<Verdict> {
  const verdict: Verdict = { message, allowedBy: [], rule: undefined, refusal: undefined };
  for (const guard of guards) {
    let decision: Decision;
    try {
      const made = guard.judge(message, caller);
      decision = made instanceof Promise ? await made : made;
    } catch {
      // Fail closed: a guard that cannot decide does not allow.
      decision = GUARD_FAILED;
    }
    if ('rule' in decision && decision.rule !== undefined) verdict.rule = decision.rule;
    if (decision.effect !== 'allow') {
      verdict.refusal = decision;
      return verdict;
    }
    verdict.allowedBy.push(guard);
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

/**
 * A 2026-07-28 request the tool policy refused, for a method that revision does not define (removed
 * ones such as logging/setLevel, or any other): a server of that revision answers such a method 404
 * and -32601, and so does the sidecar, the method not being served to this caller. (Its clients
 * take any other answer for a server that does not speak the revision.)
 */
function notServed(verdict: Verdict, stateless: boolean): boolean {
  return (
    stateless && verdict.refusal?.effect === 'deny' && verdict.message.id !== undefined && !STATELESS_METHODS.has(verdict.message.method)
  );
}

/** Nothing of the request is forwarded: the sidecar answers every message itself. */
function refuse(
  context: McpContext,
  res: ServerResponse,
  request: FastifyRequest,
  caller: Caller,
  verdicts: Verdict[],
  batch: boolean,
  startedAt: number,
  bytesIn: number,
  stateless: boolean,
): void {
  const sunk = verdicts.find((v) => v.refusal !== undefined)!.refusal!;
  const limits = verdicts.map((v) => v.refusal).filter((r): r is Extract<Decision, { effect: 'limit' }> => r?.effect === 'limit');
  const headers: Record<string, string | number> = { 'x-request-id': request.id };
  if (limits.length > 0) headers['retry-after'] = Math.max(1, Math.ceil(Math.max(...limits.map((l) => l.retryAfterSeconds))));
  const errors = verdicts
    .filter((v) => v.message.id !== undefined)
    .map((v) => ({ jsonrpc: '2.0', id: v.message.id, error: refusalError(v, sunk) }));
  const bytesOut = (body: unknown) => Buffer.byteLength(JSON.stringify(body));
  let body: unknown;
  let codes: ((verdict: Verdict) => number | undefined) | undefined;
  if (!batch && errors.length === 1 && notServed(verdicts[0]!, stateless)) {
    const { message } = verdicts[0]!;
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
  } else if (!batch && errors.length === 1 && !(sunk.effect === 'limit' && verdicts[0]!.message.method !== 'tools/call')) {
    body = errors[0];
    answer(res, 200, body, headers);
  } else if (sunk.effect === 'limit' && stateless && errors.length === 1) {
    // 429 as for any request that is not a tool call, with the JSON-RPC error a 2026-07-28 client reads.
    body = errors[0];
    answer(res, 429, body, headers);
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
    const code = verdict.message.id === undefined ? undefined : (codes?.(verdict) ?? refusalError(verdict, sunk).code);
    context.end(pendingOf(verdict, caller, request.id, startedAt, bytesIn, undefined), outcome, code, written);
  }
}

/** A message read from the body, from its judgement until it ends (McpContext.end). */
function pendingOf(
  verdict: Verdict,
  caller: Caller,
  reqId: string,
  startedAt: number,
  bytesIn: number,
  rewriters: readonly Guard[] | undefined,
): Pending {
  return {
    message: verdict.message,
    caller,
    reqId,
    startedAt,
    bytesIn,
    allowedBy: verdict.allowedBy,
    rule: verdict.rule,
    rewriters,
    inFlightKey: undefined,
    cancelled: false,
    ended: false,
  };
}

/** A message of a 2026-07-28 POST whose headers disagree with it, and how. */
interface Mismatch {
  readonly message: ClientMessage;
  readonly refusal: HeaderRefusal;
}

/** The first message of the body its headers disagree with (Mcp-Param-* checked where a listing marked the tool's arguments). */
function headerMismatchIn(context: McpContext, request: FastifyRequest, parsed: ParsedBody): Mismatch | undefined {
  for (const message of parsed.messages) {
    const bindings = message.method === 'tools/call' ? context.paramHeaders.of(message.tool) : undefined;
    const refusal = checkRequestMetadata(request.headers, message, bindings);
    if (refusal !== undefined) return { message, refusal };
  }
  return undefined;
}

/** 400 with HeaderMismatch (or Invalid params for a missing _meta version) naming the header; nothing forwarded. */
function refuseMismatch(
  context: McpContext,
  res: ServerResponse,
  request: FastifyRequest,
  caller: Caller,
  parsed: ParsedBody,
  { message, refusal }: Mismatch,
  startedAt: number,
  bytesIn: number,
): void {
  const body = { jsonrpc: '2.0', id: message.id ?? null, error: { code: refusal.rpcCode, message: refusal.message } };
  answer(res, 400, body, { 'x-request-id': request.id });
  context.metrics.headerMismatches.inc({ header: refusal.header });
  const written = Buffer.byteLength(JSON.stringify(body));
  for (const each of parsed.messages) {
    const verdict: Verdict = { message: each, allowedBy: [], rule: undefined, refusal: undefined };
    context.end(
      pendingOf(verdict, caller, request.id, startedAt, bytesIn, undefined),
      'header_mismatch',
      each.id === undefined ? undefined : refusal.rpcCode,
      written,
    );
  }
}

export function createInterceptor(context: McpContext): Interceptor {
  const { guards } = context;
  const headerMismatch = (request: FastifyRequest, parsed: ParsedBody) => headerMismatchIn(context, request, parsed);
  const maxBytes = context.config.mcpMaxBodyBytes;
  const guarded = guards.length > 0;

  function rewritersOf(message: ClientMessage): readonly Guard[] | undefined {
    if (message.id === undefined) return undefined;
    const rewriters = guards.filter((g) => g.rewrites?.(message.method, message) === true);
    return rewriters.length > 0 ? rewriters : undefined;
  }

  async function post(request: FastifyRequest, res: ServerResponse, caller: Caller, startedAt: number): Promise<Forwarding | 'answered'> {
    const unparsed = (head: Buffer | undefined, streamRest: boolean, bytesIn: number): Forwarding => ({
      head,
      streamRest,
      reader: new McpExchange(context, { reqId: request.id, caller, startedAt, bytesIn, pending: [], responses: [], unparsed: true })
        .reader,
    });
    const read = await readBody(request.raw, maxBytes);
    if (read.kind === 'gone') {
      res.destroy();
      return 'answered';
    }
    if (read.kind === 'over') {
      if (guarded) return refuseBody(res, request, 413, `request body is larger than MCP_MAX_BODY_BYTES (${maxBytes} bytes)`);
      return unparsed(read.head, true, Number(request.headers['content-length'] ?? read.head?.length ?? 0));
    }
    const { body } = read;
    const parsed = parseBody(body, context.audit !== undefined);
    if (typeof parsed === 'string') {
      if (guarded) return refuseBody(res, request, 400, PROBLEMS[parsed], PROBLEM_CODES[parsed]);
      return unparsed(body, false, body.length);
    }
    const version = request.headers['mcp-protocol-version'];
    const stateless =
      eraOf(
        typeof version === 'string' ? version : undefined,
        parsed.messages.some((m) => m.meta?.protocolVersion !== undefined),
      ) === 'stateless';
    if (stateless) {
      // The headers a 2026-07-28 request mirrors its body into must say what the body says,
      // before anything is judged by the body.
      const mismatch = headerMismatch(request, parsed);
      if (mismatch !== undefined) {
        refuseMismatch(context, res, request, caller, parsed, mismatch, startedAt, body.length);
        return 'answered';
      }
    }
    const verdicts: Verdict[] = [];
    for (const message of parsed.messages) {
      verdicts.push(guarded ? await judge(guards, message, caller) : { message, allowedBy: [], rule: undefined, refusal: undefined });
    }
    if (verdicts.some((v) => v.refusal !== undefined)) {
      refuse(context, res, request, caller, verdicts, parsed.batch, startedAt, body.length, stateless);
      return 'answered';
    }
    for (const message of parsed.messages) {
      if (message.method === 'notifications/cancelled') context.cancel(caller.sessionId, message.params?.requestId);
    }
    const pending = verdicts.map((v) => pendingOf(v, caller, request.id, startedAt, body.length, rewritersOf(v.message)));
    return {
      head: body,
      streamRest: false,
      reader: new McpExchange(context, {
        reqId: request.id,
        caller,
        startedAt,
        bytesIn: body.length,
        pending,
        responses: parsed.responses,
        unparsed: false,
      }).reader,
    };
  }

  return (request, res) => {
    const method = request.method;
    const session = request.headers['mcp-session-id'];
    const sessionId = typeof session === 'string' ? session : undefined;
    if (method === 'POST') {
      const type = request.headers['content-type'];
      if (!isJsonContentType(type)) {
        const hasBody =
          (request.headers['content-length'] !== undefined && request.headers['content-length'] !== '0') ||
          request.headers['transfer-encoding'] !== undefined;
        // A body of another type cannot be judged: with a guard it never passes.
        if (guarded && hasBody) return Promise.resolve(refuseBody(res, request, 400, 'request body must be application/json'));
        return undefined;
      }
      const version = request.headers['mcp-protocol-version'];
      const caller: Caller = {
        identity: request.auth.identity!,
        sessionId,
        protocolVersion: typeof version === 'string' ? version : undefined,
      };
      return post(request, res, caller, performance.now());
    }
    if (method === 'DELETE') {
      if (sessionId !== undefined) context.sessions.end(sessionId);
      return undefined;
    }
    // A session's GET stream carries the server's own requests and notifications. Under a guard
    // that rewrites results every GET stream is read, sessionless ones too (the legacy HTTP+SSE
    // transport's): a result there cannot be filtered and fails closed (mcp/exchange.ts).
    if (method === 'GET' && (sessionId !== undefined || context.rewriting)) {
      const caller = { identity: request.auth.identity!, sessionId };
      return {
        head: undefined,
        streamRest: false,
        reader: new McpExchange(context, {
          reqId: request.id,
          caller,
          startedAt: performance.now(),
          bytesIn: 0,
          pending: [],
          responses: [],
          unparsed: false,
        }).reader,
      };
    }
    return undefined;
  };
}
