import type { AuthState } from '../auth/authenticate.js';
import type { RequestTrace } from '../tracing/request-trace.js';

declare module 'fastify' {
  interface FastifyRequest {
    auth: AuthState;
    /** The request's spans; undefined without tracing (not even decorated then). */
    trace: RequestTrace | undefined;
  }
  interface FastifyContextConfig {
    /** Served by the sidecar itself without a token; never forwarded. */
    public?: boolean;
  }
}
