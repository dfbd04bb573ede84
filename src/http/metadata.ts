// RFC 9728 protected resource metadata, served by the sidecar itself without a token.

import type { FastifyInstance } from 'fastify';
import { trustedIssuers, type Config } from '../config/config.js';
import { OWN_ERRORS } from '../lib/errors.js';
import { prepare } from '../lib/error-response.js';
import { WELL_KNOWN } from '../lib/resource-metadata.js';

export { resourceMetadataUrl } from '../lib/resource-metadata.js';

const READ_ONLY = prepare(OWN_ERRORS.metadata_read_only, undefined, { allow: 'GET, HEAD' });

/** The paths the metadata is served at: the bare well-known path, and it followed by RESOURCE_URL's path. */
export function resourceMetadataPaths(resourceUrl: string): string[] {
  const path = new URL(resourceUrl).pathname;
  return path === '/' ? [WELL_KNOWN] : [WELL_KNOWN, `${WELL_KNOWN}${path}`];
}

export function registerResourceMetadata(app: FastifyInstance, config: Config): void {
  const document = {
    resource: config.resourceUrl,
    // Every trusted issuer: a client picks the one its user belongs to.
    authorization_servers: trustedIssuers(config).map((i) => i.issuer),
    bearer_methods_supported: ['header'],
    ...(config.resourceScopes.length > 0 ? { scopes_supported: config.resourceScopes } : {}),
    // RFC 9728 section 2: what DPoP proofs may be signed with, and whether only DPoP-bound tokens pass.
    ...(config.dpop === 'off'
      ? {}
      : { dpop_signing_alg_values_supported: config.algorithms, dpop_bound_access_tokens_required: config.dpop === 'require' }),
  };
  // A scope of its own: any request body is ignored here, so every method gets its answer.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    for (const url of resourceMetadataPaths(config.resourceUrl)) {
      scope.route({
        method: ['GET', 'HEAD'],
        url,
        config: { public: true },
        handler: async (_request, reply) => reply.header('cache-control', 'max-age=300').send(document),
      });
      // Other methods on the metadata path are answered here too: the path is never forwarded.
      scope.route({
        method: ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
        url,
        config: { public: true },
        handler: (request, reply) => {
          reply.hijack();
          READ_ONLY.write(reply.raw, request.id);
        },
      });
    }
  });
}
