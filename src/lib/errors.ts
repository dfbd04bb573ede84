// Every rejection reason in one table: status, OAuth error code and a description that
// says what is wrong without echoing the token.

export const REJECTIONS = {
  missing_token: { status: 401, description: 'no bearer token in the Authorization header' },
  malformed_token: { status: 401, description: 'token is not a well-formed signed JWT' },
  unsupported_algorithm: { status: 401, description: 'token signing algorithm is not allowed' },
  unknown_key: { status: 401, description: 'token signing key is not in the issuer key set' },
  invalid_signature: { status: 401, description: 'token signature is invalid' },
  expired: { status: 401, description: 'token expired' },
  not_yet_valid: { status: 401, description: 'token is not valid yet' },
  wrong_issuer: { status: 401, description: 'token issuer is not accepted' },
  wrong_audience: { status: 401, description: 'token audience and authorized party are not accepted' },
  wrong_token_type: { status: 401, description: 'token is not an access token' },
  missing_claim: { status: 401, description: 'token lacks a required claim' },
  invalid_claim: { status: 401, description: 'token claim is not a clean string' },
  inactive_token: { status: 401, description: 'token is not active at its issuer (revoked, or unknown to it)' },
  forbidden: { status: 403, description: 'token lacks a required group or role' },
  jwks_unavailable: { status: 503, description: 'signing keys of the issuer are not available' },
  introspection_unavailable: { status: 503, description: 'token introspection at the issuer is not available' },
  // Proof of possession (RFC 9449): `error` is the code of the DPoP challenge and the JSON body.
  invalid_dpop_proof: { status: 401, description: 'DPoP proof is missing or invalid', error: 'invalid_dpop_proof' },
  dpop_replay: { status: 401, description: 'DPoP proof was used before', error: 'invalid_dpop_proof' },
  dpop_binding_mismatch: { status: 401, description: 'token is not bound to the key of the DPoP proof', error: 'invalid_token' },
  dpop_required: {
    status: 401,
    description: 'a DPoP-bound token sent with the DPoP scheme and a proof is required',
    error: 'invalid_token',
  },
  use_dpop_nonce: { status: 401, description: 'DPoP proof must carry the nonce in the DPoP-Nonce header', error: 'use_dpop_nonce' },
} as const satisfies Record<string, { status: number; description: string; error?: string }>;

export type RejectionReason = keyof typeof REJECTIONS;
export const REJECTION_REASONS = Object.keys(REJECTIONS) as RejectionReason[];

/**
 * Thrown by token verification; `detail` refines the table's description (never token data).
 * Not an Error on purpose: rejections are the normal path for hostile traffic, and capturing a
 * stack trace for each one was the largest cost of answering a 401.
 */
export class Rejection {
  readonly message: string;
  /** The trusted issuer the token named, once verification knew it (mcp_auth_issuer_verdicts_total). */
  issuer: string | undefined;

  constructor(
    readonly reason: RejectionReason,
    readonly detail?: string,
    /**
     * Set when the same token would get the same answer for as long as this returns true (a
     * bad signature: while its key is in the key set), so that the answer may be remembered.
     */
    readonly stands?: () => boolean,
  ) {
    this.message = detail ?? REJECTIONS[reason].description;
    this.issuer = undefined;
  }

  get status(): number {
    return REJECTIONS[this.reason].status;
  }

  /** Whether the answer challenges for the DPoP scheme (a failed proof of possession), not Bearer. */
  get dpop(): boolean {
    return 'error' in REJECTIONS[this.reason];
  }

  /** The OAuth 2.0 error code (RFC 6750 section 3.1, RFC 9449 section 7.1) for the JSON body. */
  get code(): string {
    const entry = REJECTIONS[this.reason];
    if ('error' in entry) return entry.error;
    if (this.reason === 'missing_token') return 'unauthorized';
    if (this.status === 403) return 'insufficient_scope';
    if (this.status === 503) return 'temporarily_unavailable';
    return 'invalid_token';
  }

  /** The `error` attribute of WWW-Authenticate: absent without a token (RFC 6750 section 3.1). */
  get challengeError(): string | undefined {
    const entry = REJECTIONS[this.reason];
    if ('error' in entry) return entry.error;
    if (this.status === 403) return 'insufficient_scope';
    if (this.status === 401 && this.reason !== 'missing_token') return 'invalid_token';
    return undefined;
  }
}

export const UPSTREAM_FAILURES = {
  connect: { status: 502, error: 'bad_gateway', description: 'upstream is unreachable' },
  reset: { status: 502, error: 'bad_gateway', description: 'upstream closed the connection' },
  timeout: { status: 504, error: 'gateway_timeout', description: 'upstream did not answer in time' },
} as const;

export type UpstreamFailureKind = keyof typeof UPSTREAM_FAILURES;

/**
 * Requests refused for how they are sent, not for their token: by Node's parser (bad syntax,
 * headers over the limit, too slow), by the router (a target that does not decode), or by the
 * edge checks before authentication (an Origin not allowed, a transfer coding not forwarded).
 * The reason is the label of `mcp_auth_http_refused_total`; the body is fixed, echoing nothing.
 */
export const HTTP_REFUSALS = {
  bad_request: { status: 400, error: 'invalid_request', description: 'the request is not valid HTTP/1.1' },
  headers_too_large: { status: 431, error: 'invalid_request', description: 'request headers are too large' },
  request_timeout: { status: 408, error: 'invalid_request', description: 'the request was not received in time' },
  bad_target: { status: 400, error: 'invalid_request', description: 'the request target is not a valid URL path' },
  unsupported_transfer_coding: { status: 501, error: 'not_implemented', description: 'only the chunked transfer coding is accepted' },
  origin_not_allowed: { status: 403, error: 'forbidden_origin', description: 'the Origin of the request is not allowed' },
} as const;

export type HttpRefusalReason = keyof typeof HTTP_REFUSALS;
export const HTTP_REFUSAL_REASONS = Object.keys(HTTP_REFUSALS) as HttpRefusalReason[];

/**
 * The sidecar's other answers of its own, after authentication: what it does not forward, an MCP
 * body it cannot judge, and its own failure. Codes from the same vocabulary as the tables above.
 */
export const OWN_ERRORS = {
  method_not_forwarded: { status: 405, error: 'method_not_allowed', description: 'the request method is not forwarded' },
  metadata_read_only: { status: 405, error: 'method_not_allowed', description: 'metadata is read-only' },
  path_not_plain: { status: 400, error: 'invalid_request', description: 'request path must be absolute, without . or .. segments' },
  body_too_large: { status: 413, error: 'payload_too_large', description: 'request body is larger than MCP_MAX_BODY_BYTES' },
  body_not_judged: { status: 400, error: 'invalid_request', description: 'request body cannot be judged' },
  // Too many MCP bodies waiting to be read (mcp/read-budget.ts): sent again, it is read.
  body_read_busy: { status: 503, error: 'temporarily_unavailable', description: 'too many request bodies are being read at once' },
  rate_limited: { status: 429, error: 'rate_limited', description: 'rate limit reached' },
  server_error: { status: 500, error: 'server_error', description: 'the sidecar failed to handle the request' },
  // UPSTREAM_TOKEN=exchange and no token for the upstream: the request is not forwarded without it.
  token_exchange_failed: {
    status: 502,
    error: 'bad_gateway',
    description: 'the identity provider did not exchange the token for one of the upstream',
  },
} as const;

/**
 * Start-up cannot go on: `variable` names the setting to fix (`PORT`, `ADMIN_PORT`,
 * `TLS_CERT_FILE`, ...), `value` what it was. The process writes one JSON line from it and exits 1.
 */
export class StartupError extends Error {
  /** More to say in the log line, e.g. `address` for a listener. */
  readonly fields: Record<string, string>;

  constructor(
    readonly variable: string,
    readonly value: string,
    message: string,
    options: { cause?: unknown; fields?: Record<string, string> } = {},
  ) {
    super(message, { cause: options.cause });
    this.fields = options.fields ?? {};
    this.name = 'StartupError';
  }

  /** The error code of the cause (`EADDRINUSE`, `ENOENT`, ...), when it has one. */
  get code(): string | undefined {
    const code = (this.cause as { code?: unknown } | undefined)?.code;
    return typeof code === 'string' ? code : undefined;
  }
}

/**
 * JSON-RPC error codes of the answers the sidecar gives MCP messages itself. Its own codes lie in
 * -32000 to -32019, the part of JSON-RPC's server-error range that MCP (since 2026-07-28) leaves to
 * implementations; MCP reserves -32020 to -32099 for codes it defines, and the sidecar uses those
 * (and JSON-RPC's own) only with their defined meaning. README: Error codes.
 */
export const RPC_CODES = {
  /** The tool policy denied the message. */
  policyDenied: -32003,
  /** The session named belongs to another subject (read-request.ts: SESSION_FORBIDDEN, HTTP 403). */
  sessionForbidden: -32004,
  /** A rate limit refused a tool call (was -32029, inside MCP's range, before 2026-07-28 reserved it). */
  rateLimited: -32010,
  /** A guard could not decide about the message (fail closed). */
  notJudged: -32011,
  /** The response could not be read or matched to its request, so the tool policy could not be applied to it. */
  responseUnchecked: -32012,
  /**
   * The one reading refused the request before any guard (read-request.ts): a body the server
   * could read otherwise than the sidecar (member names folding together, duplicate ids, a batch
   * its version lacks, dot segments), a malformed session id, a body on another method, an id in flight.
   */
  requestRefused: -32013,
  // Codes JSON-RPC and MCP define, used with their meaning:
  /** MCP HeaderMismatch: an Mcp-* or MCP-Protocol-Version header disagrees with the body, or is missing or malformed. */
  headerMismatch: -32020,
  /** JSON-RPC Invalid params: also MCP's answer to a request lacking a required `_meta` field. */
  invalidParams: -32602,
  /** JSON-RPC Method not found: a 2026-07-28 server's answer (with 404) to a method it does not serve. */
  methodNotFound: -32601,
  /** JSON-RPC Invalid Request: a body that is not JSON-RPC (a 2026-07-28 request's answer). */
  invalidRequest: -32600,
  /** JSON-RPC Parse error: a body that is not UTF-8 JSON (a 2026-07-28 request's answer). */
  parseError: -32700,
} as const;
