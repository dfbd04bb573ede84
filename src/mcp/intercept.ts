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
import { isJsonContentType, parseBody, type BodyProblem } from './messages.js';
import { resourceMetadataUrl } from '../lib/resource-metadata.js';

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

function refuseBody(res: ServerResponse, request: FastifyRequest, status: 400 | 413, description: string): 'answered' {
  // A body left unread would be read by Node to reuse the connection: close it instead.
  const headers: Record<string, string> = { 'x-request-id': request.id };
  if (status === 413 || !request.raw.complete) headers.connection = 'close';
  answer(res, status, { error: status === 413 ? 'payload_too_large' : 'invalid_request', error_description: description }, headers);
  return 'answered';
}

interface Verdict {
  readonly message: ClientMessage;
  readonly allowedBy: Guard[];
  rule: string | undefined;
  refusal: Exclude<Decision, { effect: 'allow' }> | undefined;
}

const GUARD_FAILED: Decision = { effect: 'deny', rpcCode: -32603, message: 'the request could not be judged' };
/** The JSON-RPC error a rate-limited tool call gets: implementation-defined server error range. */
export const RATE_LIMITED_CODE = -32029;

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
): void {
  const sunk = verdicts.find((v) => v.refusal !== undefined)!.refusal!;
  const limits = verdicts.map((v) => v.refusal).filter((r): r is Extract<Decision, { effect: 'limit' }> => r?.effect === 'limit');
  const headers: Record<string, string | number> = { 'x-request-id': request.id };
  if (limits.length > 0) headers['retry-after'] = Math.max(1, Math.ceil(Math.max(...limits.map((l) => l.retryAfterSeconds))));
  const errors = verdicts
    .filter((v) => v.message.id !== undefined)
    .map((v) => ({ jsonrpc: '2.0', id: v.message.id, error: refusalError(v, sunk) }));
  const bytesOut = (body: unknown) => Buffer.byteLength(JSON.stringify(body));
  // Refused for scopes alone (every refusal a policy denial naming the scopes a step-up brings):
  // the MCP authorization spec's 403 insufficient_scope, with every scope the request needs in
  // one challenge, so that a client can ask its authorization server for them and retry.
  const refusals = verdicts.map((v) => v.refusal).filter((r) => r !== undefined);
  const stepUp = refusals.every((r) => r.effect === 'deny' && r.scopes !== undefined)
    ? [...new Set(refusals.flatMap((r) => (r as { scopes: readonly string[] }).scopes))]
    : undefined;
  let body: unknown;
  if (stepUp !== undefined) {
    const scope = stepUp.join(' ');
    const metadata = resourceMetadataUrl(context.config.resourceUrl);
    const description = `the token lacks a scope this request needs (${scope})`;
    headers['www-authenticate'] =
      `Bearer error="insufficient_scope", scope="${scope}", resource_metadata="${metadata}", error_description="${description}"`;
    body = { error: 'insufficient_scope', error_description: description, scope };
    answer(res, 403, body, headers);
  } else if (batch && errors.length > 0) {
    body = errors;
    answer(res, 200, body, headers);
  } else if (!batch && errors.length === 1 && !(sunk.effect === 'limit' && verdicts[0]!.message.method !== 'tools/call')) {
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
    const code = verdict.message.id === undefined ? undefined : refusalError(verdict, sunk).code;
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

export function createInterceptor(context: McpContext): Interceptor {
  const { guards } = context;
  const maxBytes = context.config.mcpMaxBodyBytes;
  const guarded = guards.length > 0;

  function rewritersOf(message: ClientMessage): readonly Guard[] | undefined {
    if (message.id === undefined) return undefined;
    const rewriters = guards.filter((g) => g.rewrites?.(message.method) === true);
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
      if (guarded) return refuseBody(res, request, 400, PROBLEMS[parsed]);
      return unparsed(body, false, body.length);
    }
    const verdicts: Verdict[] = [];
    for (const message of parsed.messages) {
      verdicts.push(guarded ? await judge(guards, message, caller) : { message, allowedBy: [], rule: undefined, refusal: undefined });
    }
    if (verdicts.some((v) => v.refusal !== undefined)) {
      refuse(context, res, request, caller, verdicts, parsed.batch, startedAt, body.length);
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
      return post(request, res, { identity: request.auth.identity!, sessionId }, performance.now());
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
