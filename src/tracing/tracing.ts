// OpenTelemetry traces: the hooks app.ts wires into the request path when tracing is configured.
// app.ts imports this module (and through it OpenTelemetry's API and SDK) only then: without an
// OTLP endpoint nothing of it is loaded and the request path does no tracing work.
//
// Contexts are passed by hand (the request's span lives on `request.trace`), not through a
// context manager: no async hooks, no cost outside the spans themselves. Token verification is
// synchronous until it waits for the issuer's key set, so the verification span in progress is
// found by the cache lookup and the key set for that synchronous part.

import { ROOT_CONTEXT, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import type { Logger } from 'pino';
import type { TracingSettings } from '../config/otel.js';
import type { RequestVerify } from '../auth/authenticate.js';
import type { KeySource } from '../auth/keyset.js';
import type { ProofChecker } from '../auth/dpop.js';
import type { VerifyToResult } from '../auth/verify.js';
import { Rejection } from '../lib/errors.js';
import type { Metrics } from '../observability/metrics.js';
import { createSpansDropped } from '../observability/metrics.js';
import { RequestTrace, upstreamTarget, type UpstreamTarget } from './request-trace.js';
import { startPipeline, type TracingPipeline } from './export.js';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';

export { RequestTrace } from './request-trace.js';

export interface TracingOptions {
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'registry'>;
  readonly upstreamUrl: string;
  /** Instead of the OTLP exporter (tests: the SDK's in-memory exporter). */
  readonly exporter?: SpanExporter;
}

/** A verification under way: its span exists once the work is more than a cache hit. */
interface Verification {
  readonly request: RequestTrace;
  readonly startedAt: number;
  span: Span | undefined;
  hit: boolean;
}

/** The verification's span, started when the verification was (made late: only a cache miss has one). */
function spanOf(verification: Verification): Span {
  return (verification.span ??= verification.request.child('verify token', undefined, verification.startedAt));
}

/** A span of the token's checks that failed: a rejection's reason, else `_OTHER` (a bug, its message unsaid). */
function failed(span: Span, error: unknown): void {
  span.setAttribute('error.type', error instanceof Rejection ? error.reason : '_OTHER');
  span.setStatus({ code: SpanStatusCode.ERROR });
}

function endVerification(verification: Verification, error?: unknown): void {
  if (verification.hit) return;
  const span = spanOf(verification);
  if (error !== undefined) failed(span, error);
  span.end(performance.now());
}

export class Tracing {
  /** The synchronous part of a verification under way (the cache lookup and the key set are called from it). */
  private verifying: Verification | undefined;
  private readonly target: UpstreamTarget;

  constructor(
    private readonly pipeline: TracingPipeline,
    upstreamUrl: string,
  ) {
    this.target = upstreamTarget(upstreamUrl);
  }

  /** The first onRequest hook: the request's SERVER span, ended when its response closes. */
  readonly onRequest = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    const requestTrace = new RequestTrace(this.pipeline.spans, this.target, request);
    request.trace = requestTrace;
    reply.raw.on('close', () => requestTrace.end(request, reply.raw, request.auth));
    done();
  };

  /**
   * Verification with a span of its own, a child of the request's. A verdict the cache already
   * holds is an attribute of the request's span instead (a lookup of about a microsecond, less
   * than a span costs); a key set fetch the verification waits for is a child of its span.
   */
  verifier(verify: VerifyToResult): RequestVerify {
    return (token, request) => {
      const requestTrace = request.trace;
      if (requestTrace === undefined || !requestTrace.span.isRecording()) return verify(token);
      const verification: Verification = { request: requestTrace, startedAt: performance.now(), span: undefined, hit: false };
      this.verifying = verification;
      let result: ReturnType<VerifyToResult>;
      try {
        result = verify(token);
      } catch (error) {
        this.verifying = undefined;
        endVerification(verification, error);
        throw error;
      }
      this.verifying = undefined;
      if (!(result instanceof Promise)) {
        endVerification(verification, result instanceof Rejection ? result : undefined);
        return result;
      }
      return result.then(
        (settled) => {
          endVerification(verification, settled instanceof Rejection ? settled : undefined);
          return settled;
        },
        (error: unknown) => {
          endVerification(verification, error);
          return Promise.reject(error as Error);
        },
      );
    };
  }

  /** The verdict cache looked the token up (its onLookup). */
  cacheLookup(hit: boolean): void {
    const verification = this.verifying;
    if (verification === undefined) return;
    if (hit) {
      verification.hit = true;
      verification.request.span.setAttribute('mcp_auth.verdict_cache', 'hit');
    } else spanOf(verification).setAttribute('mcp_auth.verdict_cache', 'miss');
  }

  /** The key set, with a span for a verification that waits on a fetch (an unknown kid). */
  keySource(keys: KeySource): KeySource {
    const resolve = (kid: string | undefined, alg: string) => {
      const result = keys.resolve(kid, alg);
      const verification = this.verifying;
      if (!(result instanceof Promise) || verification === undefined) return result;
      const span = verification.request.child('key set fetch', trace.setSpan(ROOT_CONTEXT, spanOf(verification)));
      const before = keys.status().lastSuccessMs;
      const end = () => {
        const fetched = keys.status().lastSuccessMs !== before;
        span.setAttribute('mcp_auth.jwks.result', fetched ? 'success' : 'failure');
        if (!fetched) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      };
      return result.then(
        (key) => {
          end();
          return key;
        },
        (error: unknown) => {
          end();
          return Promise.reject(error as Error);
        },
      );
    };
    return {
      resolve,
      has: (key) => keys.has(key),
      status: () => keys.status(),
      start: () => keys.start(),
      close: () => keys.close(),
    };
  }

  /** DPoP proof checks, a span each: with REDIS_URL set, one includes a Redis round trip (replay). */
  proofChecker(checker: ProofChecker): ProofChecker {
    return {
      nonce: () => checker.nonce(),
      check: (request, token, jkt) => {
        const requestTrace = request.trace;
        if (requestTrace === undefined || !requestTrace.span.isRecording()) return checker.check(request, token, jkt);
        const span = requestTrace.child('check DPoP proof');
        return checker.check(request, token, jkt).then(
          () => span.end(),
          (error: unknown) => {
            failed(span, error);
            span.end();
            return Promise.reject(error as Error);
          },
        );
      },
    };
  }

  /** Exports what is queued now. */
  flush(): Promise<void> {
    return this.pipeline.flush();
  }

  /** Exports what is left, within `timeoutMs`. */
  shutdown(timeoutMs: number): Promise<void> {
    return this.pipeline.shutdown(timeoutMs);
  }
}

export function startTracing(settings: TracingSettings, options: TracingOptions): Tracing {
  const pipeline = startPipeline(settings, createSpansDropped(options.metrics.registry), options.logger, options.exporter);
  return new Tracing(pipeline, options.upstreamUrl);
}
