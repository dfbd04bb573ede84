import type { AuthState } from '../auth/authenticate.js';

declare module 'fastify' {
  interface FastifyRequest {
    auth: AuthState;
  }
  interface FastifyContextConfig {
    /** Served by the sidecar itself without a token; never forwarded. */
    public?: boolean;
  }
}
