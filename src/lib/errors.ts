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
  forbidden: { status: 403, description: 'token lacks a required group or role' },
  jwks_unavailable: { status: 503, description: 'signing keys of the issuer are not available' },
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

/** UPSTREAM_TOKEN=exchange and no token for the upstream: the request is not forwarded without it. */
export const TOKEN_EXCHANGE_FAILED = {
  status: 502,
  error: 'bad_gateway',
  reason: 'token_exchange_failed',
  description: 'the identity provider did not exchange the token for one of the upstream',
} as const;

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
