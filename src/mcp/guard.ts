// The seam between reading MCP traffic (src/mcp/) and deciding about it: the tool policy and the
// rate limits are guards. The MCP layer parses each POST body, asks every guard about every
// message (each element of a batch) before anything is forwarded, answers a refused message
// itself, and lets guards rewrite the results of the requests they name (list filtering).
// The proxy knows nothing of guards; guards know nothing of HTTP.

import type { Identity } from '../auth/verify.js';

/** One JSON-RPC message the client sent: a request when `id` is defined, else a notification. */
export interface ClientMessage {
  readonly method: string;
  /** The JSON-RPC id as sent (string or number); undefined for a notification. */
  readonly id: string | number | undefined;
  /** `params` when it is a JSON object, else undefined. */
  readonly params: Readonly<Record<string, unknown>> | undefined;
  /** `params.name` of tools/call when it is a string. */
  readonly tool: string | undefined;
  /** `params.name` of prompts/get when it is a string. */
  readonly prompt: string | undefined;
  /** `params.uri` of resources/read, resources/subscribe, resources/unsubscribe when it is a string. */
  readonly resource: string | undefined;
  /** `params.arguments` of tools/call and prompts/get when it is a JSON object. */
  readonly arguments: Readonly<Record<string, unknown>> | undefined;
  /** `arguments` as written in the body (for the audit's hash), when the body was read for the audit. */
  readonly argumentsText?: string;
  /** What `params._meta` says, when it is an object (every request of the 2026-07-28 revision has one). */
  readonly meta?: MessageMeta;
  /** A retry of a multi round-trip request: `params.inputResponses` is there. */
  readonly inputResponses?: boolean;
}

/** The `_meta` keys the sidecar reads (MCP 2026-07-28 per-request fields, W3C trace context). */
export interface MessageMeta {
  /** `io.modelcontextprotocol/protocolVersion` when a string. */
  readonly protocolVersion: string | undefined;
  /** Whether `io.modelcontextprotocol/clientCapabilities` is an object. */
  readonly capabilities: boolean;
  /** `io.modelcontextprotocol/clientInfo` as `name/version`, bounded. */
  readonly client: string | undefined;
  /** The trace id of a well-formed `traceparent`. */
  readonly traceId: string | undefined;
}

/** Who sent it: the verified identity of the HTTP request, and its MCP session. */
export interface Caller {
  readonly identity: Identity;
  readonly sessionId: string | undefined;
  /** The request's MCP-Protocol-Version header, for the audit where no session or `_meta` says the version. */
  readonly protocolVersion?: string;
}

export type Decision =
  /** `wouldDeny`: the tool policy in audit mode lets through what it would refuse; `backendError`: the rate limit store did not answer (RATE_LIMIT_ON_REDIS_ERROR decided). */
  | { readonly effect: 'allow'; readonly rule?: string; readonly wouldDeny?: true; readonly backendError?: true }
  /** Refused by policy: a request gets a JSON-RPC error with `rpcCode`, never reaches the upstream. */
  | {
      readonly effect: 'deny';
      readonly rule?: string;
      readonly rpcCode: number;
      readonly message: string;
      /** Set when refused for scopes alone: every scope the call needs (HTTP 403 `insufficient_scope`, for a step-up). */
      readonly scopes?: readonly string[];
    }
  /** Over a rate limit: a tool call gets a JSON-RPC error, any other request 429; both with Retry-After. */
  | {
      readonly effect: 'limit';
      readonly scope: 'user' | 'tool' | 'concurrency';
      readonly retryAfterSeconds: number;
      readonly message: string;
      readonly backendError?: true;
    };

/** What a decision says, as attributes of the guard's span (tracing/): plain values, no client data but names. */
export type DecisionAttributes = Readonly<Record<string, string | number | boolean>>;

export interface Guard {
  /** Judges one message before anything of its HTTP request is forwarded. */
  judge(message: ClientMessage, caller: Caller): Decision | Promise<Decision>;
  /** Called once for every message this guard allowed, when it has ended (result, error, upstream failure, client gone, or a batch refused by another guard). */
  settle?(message: ClientMessage, caller: Caller): void;
  /** Whether results of this message are to be offered to rewriteResult (only those responses are held). */
  rewrites?(method: string, message?: ClientMessage): boolean;
  /** A result the upstream sent for `message`; returns the replacement, or undefined to pass it unchanged. */
  rewriteResult?(message: ClientMessage, result: unknown, caller: Caller): unknown;
  /** The name of the span of each decision, with tracing on (none: no span). */
  readonly name?: string;
  /** A decision as its span's attributes; called only with tracing on. */
  describe?(decision: Decision): DecisionAttributes;
}
