// The one wiring file: request → authenticate → inject identity → forward → record,
// on the proxy port; metrics and health on the admin port.

import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from './lib/status-codes.js';
import type { Logger } from 'pino';
import './http/request-state.js';
import { trustedIssuers, type Config } from './config/config.js';
import { tracingSettings } from './config/otel.js';
import { createMetrics, createScrape, zeroIssuer, type Metrics } from './observability/metrics.js';
import type { Tracing } from './tracing/tracing.js';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { LazyChildLogger, createLogger, createRequestLogger } from './observability/log.js';
import { RemoteKeySet, type KeySource } from './auth/keyset.js';
import { createVerifier, keyHolder, type IssuerKeys } from './auth/verify.js';
import { Introspector } from './auth/introspection.js';
import { withIssuerVerdicts } from './auth/issuer-verdicts.js';
import { withVerdictCache } from './auth/verdict-cache.js';
import { createAuthenticateHook, extractCredential, type AuthState } from './auth/authenticate.js';
import { createDpop } from './auth/dpop.js';
import { TokenExchanges } from './auth/token-exchange.js';
import { registerResourceMetadata, resourceMetadataUrl } from './http/metadata.js';
import { registerProxy } from './http/proxy.js';
import { registerHealth } from './http/health.js';
import type { Guard } from './mcp/guard.js';
import type { PolicyAtStart } from './mcp/policy/index.js';
import { createMcpInterceptor } from './mcp/index.js';
import { LimitsFileError, anyLimit, limitsOffSummary, rulesFromConfig, withLimitsSection } from './mcp/limits/rules.js';
import type { LimitsRedis } from './mcp/limits/redis.js';
import { OWN_ERRORS, StartupError } from './lib/errors.js';
import { clientRequestId, pathOf } from './lib/request-target.js';
import { ErrorResponse, prepare } from './lib/error-response.js';
import { CertificateReloader, readTlsPair } from './http/tls.js';
import type { Server as HttpsServer } from 'node:https';
import { ConnectionGuard, clientLimits, type ClientLimits } from './http/connections.js';
import { createClientErrorHandler, createEdgeCheck, createFrameworkErrorHandler, sendRefusal } from './http/refusals.js';

export type { ClientLimits } from './http/connections.js';

export interface AppOptions {
  logger?: Logger;
  /** Another key source (tests, or a static key set); default: the issuer's JWKS. */
  keys?: KeySource;
  now?: () => number;
  /** Limits for clients of the proxy port; the defaults suit production, tests shrink them. */
  clientLimits?: Partial<ClientLimits>;
  /** Guards judging every MCP message, in order (the tool policy, then the rate limits). */
  guards?: readonly Guard[];
  /** Where spans go instead of the OTLP endpoint (tests: the SDK's in-memory exporter); tracing still needs config.tracing. */
  spanExporter?: SpanExporter;
}

export interface App {
  readonly config: Config;
  readonly proxy: FastifyInstance;
  readonly admin: FastifyInstance;
  /** The key set of the first issuer (OIDC_ISSUER). */
  readonly keys: KeySource;
  /** Every trusted issuer: its settings, key set and introspection. */
  readonly issuers: readonly IssuerKeys[];
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Undefined without an OTLP endpoint. */
  readonly tracing: Tracing | undefined;
  /** What the proxy port allows its clients, MAX_CONNECTIONS=auto resolved. */
  readonly clientLimits: ClientLimits;
  /** Starts the key set and both listeners; resolves with their URLs. */
  listen(): Promise<{ proxyUrl: string; adminUrl: string }>;
  /** Readiness turns 503, the proxy stops accepting, in-flight requests get the grace time. */
  close(): Promise<void>;
  /** For the start-up line, after listen(): the rate limits in force and the Redis state. */
  summary(): Record<string, unknown>;
}

const REDIS_STARTUP_WAIT_MS = 2000;

/** Listens, or throws a StartupError naming the variable to change (the port in use, the host not here). */
async function listenOn(
  server: FastifyInstance,
  port: number,
  host: string,
  [portVariable, hostVariable]: [string, string],
): Promise<string> {
  try {
    return await server.listen({ port, host });
  } catch (error) {
    const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    const code = (error as { code?: string }).code;
    const because = { cause: error, fields: { address } };
    if (code === 'EADDRINUSE')
      throw new StartupError(portVariable, String(port), `cannot listen on ${address}: the address is in use`, because);
    if (code === 'EACCES')
      throw new StartupError(
        portVariable,
        String(port),
        `cannot listen on ${address}: not permitted (ports below 1024 need privileges)`,
        because,
      );
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      throw new StartupError(hostVariable, host, `cannot listen on ${address}: ${host} is not an address of this host`, because);
    }
    throw new StartupError(portVariable, String(port), `cannot listen on ${address}: ${(error as Error).message}`, because);
  }
}

/** The rate limits of RATE_LIMIT_* and the policy file's `limits:` (a bad section ends start-up naming POLICY_FILE). */
async function startLimits(
  config: Config,
  metrics: Metrics,
  logger: Logger,
  policyFile: PolicyAtStart | undefined,
  redis: (() => Promise<LimitsRedis>) | undefined,
) {
  try {
    // Loaded only when some limit is set: rate-limiter-flexible and the Redis client are megabytes of a resident set.
    if (!anyLimit(withLimitsSection(rulesFromConfig(config), policyFile?.document.limits))) return undefined;
    const { createLimits } = await import('./mcp/limits/index.js');
    const client = await redis?.();
    return createLimits(config, metrics, logger, policyFile?.document.limits, client && (() => client));
  } catch (error) {
    if (!(error instanceof LimitsFileError) || policyFile === undefined) throw error;
    throw new StartupError('POLICY_FILE', policyFile.file, error.message, { cause: error });
  }
}

export async function buildApp(config: Config, options: AppOptions = {}): Promise<App> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const logRequest = createRequestLogger(logger);
  const now = options.now ?? Date.now;
  // Requests on the proxy port not yet finished: read by the in-flight gauge and by the drain.
  let active = 0;
  const traced = tracingSettings(config);
  const metrics = createMetrics(() => active, { exemplars: traced !== undefined });
  // OpenTelemetry is loaded only when an endpoint is configured (tracing/tracing.ts).
  const tracing =
    traced === undefined
      ? undefined
      : (await import('./tracing/tracing.js')).startTracing(traced, {
          logger,
          metrics,
          upstreamUrl: config.upstreamUrl,
          exporter: options.spanExporter,
        });
  // Every trusted issuer with a key set of its own (the first may be given: tests, a static set)
  // and its introspection when configured.
  const issuers: IssuerKeys[] = trustedIssuers(config).map((entry, index) => {
    const issuer = entry.issuer;
    zeroIssuer(metrics, issuer, entry.introspection !== undefined);
    const keys =
      (index === 0 ? options.keys : undefined) ??
      new RemoteKeySet({
        issuer,
        jwksUri: entry.jwksUri,
        refreshMs: config.jwksRefreshSeconds * 1000,
        cooldownMs: config.jwksCooldownSeconds * 1000,
        maxStaleMs: config.jwksMaxStaleSeconds * 1000,
        logger: index === 0 ? logger : logger.child({ issuer }),
        now,
        onRefresh: (result, count, lastSuccessMs) => {
          metrics.jwksRefresh.inc({ result, issuer });
          metrics.jwksKeys.set({ issuer }, count);
          if (lastSuccessMs !== undefined) metrics.jwksLastSuccess.set({ issuer }, lastSuccessMs / 1000);
        },
      });
    const introspector =
      entry.introspection &&
      new Introspector({
        issuer,
        settings: entry.introspection,
        variable: index === 0 ? 'OIDC_INTROSPECTION_CLIENT_SECRET_FILE' : 'ISSUERS_FILE',
        logger,
        now,
        onResult: (result) => metrics.introspection.inc({ issuer, result }),
      });
    return { issuer: entry, keys, ...(introspector ? { introspector } : {}) };
  });
  const keys = issuers[0]!.keys;
  // One Redis connection (REDIS_URL) for whatever needs one: rate limits, DPoP proofs seen. Its
  // module (and ioredis) is loaded only when one of them does.
  let redis: LimitsRedis | undefined;
  let connecting: Promise<LimitsRedis> | undefined;
  const sharedRedis =
    config.redisUrl === undefined
      ? undefined
      : () =>
          (connecting ??= import('./mcp/limits/redis.js').then(({ connectRedis }) => {
            redis = connectRedis(config.redisUrl!, config);
            // Every failed attempt is an 'error' event; its users count and log their own failures.
            redis.on('error', () => {});
            return redis;
          }));
  const dpop = await createDpop(config, {
    redis: config.dpop === 'off' ? undefined : await sharedRedis?.(),
    now,
    logger,
    onRedisError: () => metrics.dpopRedisErrors.inc(),
  });
  // Each issuer's tokens are exchanged at its own token endpoint, as its own client there.
  const tokenExchange =
    config.upstreamToken === 'exchange'
      ? new TokenExchanges(
          issuers.map((i) => i.issuer),
          { logger, now, onExchange: (result) => metrics.tokenExchanges.inc({ result }) },
        )
      : undefined;
  const cacheHits = metrics.verdictCache.labels('hit');
  const cacheMisses = metrics.verdictCache.labels('miss');
  // Traced, each key set's fetches are spans of the verification that waits on them.
  const verifying = tracing === undefined ? issuers : issuers.map((i) => ({ ...i, keys: tracing.keySource(i.keys) }));
  const cachedVerify = withVerdictCache(createVerifier(config, verifying, now), {
    maxEntries: config.verdictCacheSize,
    keys: keyHolder(issuers),
    now,
    onLookup:
      tracing === undefined
        ? (hit) => (hit ? cacheHits : cacheMisses).inc()
        : (hit) => {
            (hit ? cacheHits : cacheMisses).inc();
            tracing.cacheLookup(hit);
          },
  });
  const verify = withIssuerVerdicts(
    cachedVerify,
    metrics.issuerVerdicts,
    issuers.map((i) => i.issuer.issuer),
  );
  let draining = false;
  // Once draining and nothing is in flight, every open connection is idle or unused (clients
  // keep spare keep-alive sockets): close them all, so the drain ends with the last request.
  const closeConnectionsIfIdle = () => {
    if (draining && active === 0) proxy.server.closeAllConnections();
  };

  const limits = clientLimits(config, options.clientLimits);
  const serverOptions = {
    headersTimeout: limits.headersTimeoutMs,
    connectionsCheckingInterval: limits.timeoutCheckMs,
    maxHeaderSize: limits.maxHeaderBytes,
  };
  const tls = config.tlsCertFile === undefined ? undefined : { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile! };
  const tlsPair = tls && readTlsPair(tls);
  const proxy: FastifyInstance = Fastify({
    // Node's HTTPS server takes the same options beside the pair; a handshake gets the header
    // time. (Typed as the HTTP instance the app is written against: the two share every API used.)
    ...(tlsPair
      ? ({ https: { ...serverOptions, ...tlsPair, handshakeTimeout: limits.headersTimeoutMs } } as object)
      : { http: serverOptions }),
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // Our own answers to what Node's parser and Fastify's router refuse: Fastify's log the raw
    // request (token included) at trace, or echo the target.
    clientErrorHandler: createClientErrorHandler(logger, metrics),
    frameworkErrors: createFrameworkErrorHandler(logger, metrics),
    loggerInstance: logger as FastifyBaseLogger,
    // One line per request is written by our own hook below, with the documented fields.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: false,
    // Always our own: a client choosing the id that audit and request lines carry could make two
    // requests look like one. Theirs is logged beside it (clientRequestId).
    genReqId: () => randomUUID(),
    childLoggerFactory: (parent, bindings, options) =>
      new LazyChildLogger(parent as Logger, bindings, options) as unknown as FastifyBaseLogger,
    trustProxy: false,
    return503OnClosing: true,
  });
  const certificates = tls && new CertificateReloader(proxy.server as unknown as HttpsServer, tls, tlsPair!, logger, metrics.registry);
  const connections = new ConnectionGuard(proxy.server, limits, () => metrics.connectionsEvicted.inc());
  const edgeCheck = createEdgeCheck(config.allowedOrigins);
  proxy.decorateRequest<AuthState | null>('auth', null);
  if (tracing !== undefined) {
    proxy.decorateRequest('trace', undefined);
    proxy.addHook('onRequest', tracing.onRequest);
  }

  // Counts the request in flight and writes its one log line when the response closes, streams included.
  proxy.addHook('onRequest', (request, reply, done) => {
    request.auth = { decision: 'reject', reason: undefined, identity: undefined };
    reply.header('x-request-id', request.id);
    const startedAt = performance.now();
    active++;
    // `on`, not `once`: a response closes once, and once's wrapper and removal cost on every request.
    reply.raw.on('close', () => {
      active--;
      if (draining) setImmediate(closeConnectionsIfIdle);
      const { decision, reason, identity } = request.auth;
      logRequest({
        reqId: request.id,
        clientRequestId: clientRequestId(request.headers),
        method: request.method,
        path: pathOf(request.url),
        status: reply.raw.statusCode,
        durationMs: Math.round((performance.now() - startedAt) * 1000) / 1000,
        decision,
        reason,
        user: identity?.user,
        subject: identity?.subject,
        aborted: !reply.raw.writableFinished,
        traceId: request.trace?.traceId,
        spanId: request.trace?.spanId,
      });
    });
    // Before anything else, the metadata path included: an Origin not allowed, a coding not forwarded.
    const refusal = edgeCheck(request.headers);
    if (refusal !== undefined) {
      sendRefusal(request, reply, metrics, refusal);
      return;
    }
    done();
  });
  proxy.addHook(
    'onRequest',
    createAuthenticateHook(
      tracing === undefined ? verify : tracing.verifier(verify),
      metrics,
      resourceMetadataUrl(config.resourceUrl),
      connections,
      config.resourceScopes,
      tracing === undefined || dpop === undefined ? dpop : { ...dpop, checker: tracing.proofChecker(dpop.checker) },
    ),
  );
  // Fastify's default error answer carries the error's message, which may quote the request.
  const serverError = prepare(OWN_ERRORS.server_error);
  const clientErrors = new Map<number, ErrorResponse>();
  proxy.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    const status = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    reply.hijack();
    if (status === 500) {
      request.log.error({ errorType: error.name, code: error.code }, 'request failed');
      serverError.write(reply.raw, request.id);
      return;
    }
    let answer = clientErrors.get(status);
    if (answer === undefined) {
      answer = prepare({ status, error: 'invalid_request', description: STATUS_CODES[status] ?? 'the request is not valid' });
      clientErrors.set(status, answer);
    }
    answer.write(reply.raw, request.id);
  });
  registerResourceMetadata(proxy, config);
  // The tool policy judges first (POLICY_FILE; none: no guard), then the guards given, then the
  // rate limits: a call the policy denies costs no limit.
  // Loaded only with POLICY_FILE: the YAML parser and the CEL evaluator are megabytes of a resident set.
  const policyModule = config.policyFile === undefined ? undefined : await import('./mcp/policy/index.js');
  const policyFile = policyModule?.readPolicyAtStart(config);
  const policy = policyModule?.createPolicyGuard(config, metrics, logger, policyFile);
  const rateLimits = await startLimits(config, metrics, logger, policyFile, sharedRedis);
  // One watcher for the file: each valid version goes to both guards, rules and limits together.
  const watchedPolicy =
    policyFile === undefined
      ? undefined
      : (await import('./mcp/policy-file.js')).watchPolicyFile(
          policyFile,
          { policy, limits: rateLimits, limitsBase: rulesFromConfig(config) },
          metrics,
          logger,
        );
  const guards = [...(policy === undefined ? [] : [policy]), ...(options.guards ?? []), ...(rateLimits === undefined ? [] : [rateLimits])];
  // The client's token, verified by the hook, is what is exchanged for the upstream's.
  const upstreamCredential =
    tokenExchange &&
    ((request: FastifyRequest) =>
      tokenExchange.authorizationFor(
        (extractCredential(request.raw.rawHeaders, config.dpop) as { token: string }).token,
        request.auth.identity!.issuer,
      ));
  registerProxy(proxy, config, metrics, createMcpInterceptor(config, metrics, logger, guards), upstreamCredential);

  const admin: FastifyInstance = Fastify({
    loggerInstance: logger.child({ listener: 'admin' }) as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
  });
  if (tracing === undefined) {
    admin.get('/metrics', async (_request, reply) =>
      reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics()),
    );
  } else {
    // Exemplars exist only in OpenMetrics, which Prometheus asks for.
    const scrape = createScrape(metrics.registry);
    admin.get('/metrics', async (request, reply) => {
      const { contentType, body } = await scrape(request.headers.accept);
      return reply.header('content-type', contentType).send(body);
    });
  }
  registerHealth(admin, { issuers, upstreamUrl: config.upstreamUrl, isDraining: () => draining });

  return {
    config,
    proxy,
    admin,
    keys,
    issuers,
    metrics,
    logger,
    tracing,
    clientLimits: limits,
    async listen() {
      // MAX_CONNECTIONS=auto is worked out here, so the operator sees the number it came to.
      logger.info({ clientLimits: limits }, 'client limits');
      await Promise.all(issuers.map((i) => i.keys.start()));
      for (const i of issuers) i.introspector?.start();
      await rateLimits?.connected();
      if (
        redis !== undefined &&
        dpop !== undefined &&
        !(await (await import('./mcp/limits/redis.js')).redisReady(redis, REDIS_STARTUP_WAIT_MS))
      ) {
        logger.warn(
          { waitedMs: REDIS_STARTUP_WAIT_MS },
          'DPoP: Redis not reachable at start-up; proofs are checked for replay by this replica alone until it is',
        );
      }
      await dpop?.start();
      tokenExchange?.start();
      const proxyUrl = await listenOn(proxy, config.port, config.host, ['PORT', 'HOST']);
      certificates?.start();
      const adminUrl = await listenOn(admin, config.adminPort, config.adminHost, ['ADMIN_PORT', 'ADMIN_HOST']);
      return { proxyUrl, adminUrl };
    },
    summary: () => rateLimits?.summary() ?? limitsOffSummary(config),
    async close() {
      draining = true;
      const deadline = performance.now() + config.shutdownGraceSeconds * 1000;
      const force = setTimeout(() => proxy.server.closeAllConnections(), config.shutdownGraceSeconds * 1000);
      force.unref();
      const closed = proxy.close();
      closeConnectionsIfIdle();
      await closed;
      clearTimeout(force);
      for (const i of issuers) {
        i.keys.close();
        i.introspector?.close();
      }
      certificates?.close();
      watchedPolicy?.close();
      tokenExchange?.close();
      await rateLimits?.close();
      if (redis !== undefined) await (await import('./mcp/limits/redis.js')).closeRedis(redis, config.redisTimeoutMs);
      // The spans of the last requests go out within what is left of the grace time.
      await tracing?.shutdown(deadline - performance.now());
      await admin.close();
    },
  };
}
