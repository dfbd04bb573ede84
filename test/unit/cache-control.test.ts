import { describe, expect, it } from 'vitest';
import { privateCacheControl } from '../../src/http/cache-control.js';

describe('Cache-Control of a response to an authenticated request', () => {
  it('is private whatever the upstream said, keeping its other directives', () => {
    expect(privateCacheControl(undefined)).toBe('private');
    expect(privateCacheControl('public, max-age=60')).toBe('private, max-age=60');
    expect(privateCacheControl('PUBLIC, s-maxage=600, max-age=60')).toBe('private, max-age=60');
    expect(privateCacheControl('no-cache, no-transform')).toBe('private, no-cache, no-transform');
    expect(privateCacheControl(['public', 'private, max-age=5'])).toBe('private, max-age=5');
  });

  it('keeps no-store as the upstream wrote it', () => {
    expect(privateCacheControl('no-store')).toBe('no-store');
    expect(privateCacheControl('public, No-Store')).toBe('public, No-Store');
  });
});
