// The RFC 9728 metadata URL of this resource: where every challenge (a 401 of authentication, a
// 403 of the tool policy for scopes) points the client.

export const WELL_KNOWN = '/.well-known/oauth-protected-resource';

/** The metadata URL a client is pointed at from WWW-Authenticate (RFC 9728 section 3.1). */
export function resourceMetadataUrl(resourceUrl: string): string {
  const url = new URL(resourceUrl);
  const path = url.pathname === '/' ? '' : url.pathname;
  return `${url.origin}${WELL_KNOWN}${path}`;
}
