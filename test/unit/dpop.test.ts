import { describe, expect, it } from 'vitest';
import { normalizedHtu, publicUrlOf } from '../../src/auth/dpop.js';
import { NonceIssuer } from '../../src/auth/dpop-nonce.js';
import { ProofMemory, ReplayMemoryFull } from '../../src/auth/dpop-replay.js';

describe('htu as RFC 9449 compares it', () => {
  it.each([
    ['HTTPS://Example.COM/mcp', 'https://example.com/mcp'],
    ['https://example.com:443/mcp', 'https://example.com/mcp'],
    ['http://example.com:80', 'http://example.com/'],
    ['https://example.com/%7Euser/%6d%63%70', 'https://example.com/~user/mcp'],
    ['https://example.com/a%2fb', 'https://example.com/a%2Fb'],
    ['https://example.com/a/./b/../mcp', 'https://example.com/a/mcp'],
    ['https://example.com/a/%2E%2E/mcp', 'https://example.com/mcp'],
    ['https://example.com/mcp?q=1#frag', 'https://example.com/mcp'],
  ])('%s → %s', (given, normal) => {
    expect(normalizedHtu(given)).toBe(normal);
  });

  it.each(['ftp://example.com/mcp', 'https://user:pw@example.com/mcp', 'not a url', '/mcp', ''])('%j is no htu', (given) => {
    expect(normalizedHtu(given)).toBeUndefined();
  });

  it("makes the request's public URL from RESOURCE_URL's origin and the path received, query dropped", () => {
    expect(publicUrlOf('https://mcp.example.com', '/mcp?session=1')).toBe('https://mcp.example.com/mcp');
    expect(publicUrlOf('https://mcp.example.com', '/%6Dcp')).toBe('https://mcp.example.com/mcp');
    // An absolute-form target is not a path: no public URL, so no proof can match it.
    expect(publicUrlOf('https://mcp.example.com', 'http://evil.test/mcp')).toBeUndefined();
  });
});

describe('proofs seen, in memory', () => {
  it('refuses a key within its time, forgets it after, and bounds the memory (fail closed)', () => {
    let now = 1_000_000;
    const memory = new ProofMemory(() => now, 3);
    expect(memory.firstUse('a', 1000)).toBe(true);
    expect(memory.firstUse('a', 1000)).toBe(false);
    expect(memory.firstUse('b', 1000)).toBe(true);
    expect(memory.firstUse('c', 1000)).toBe(true);
    expect(() => memory.firstUse('d', 1000)).toThrow(ReplayMemoryFull);
    now += 1000;
    // Expired entries leave first; then there is room again.
    expect(memory.firstUse('d', 1000)).toBe(true);
    expect(memory.size).toBe(1);
    expect(memory.firstUse('a', 1000)).toBe(true);
  });
});

describe('nonces', () => {
  it("accepts this slot's and the previous slot's nonce, refuses older, forged or foreign ones", () => {
    let now = 10_000_000;
    const issuer = new NonceIssuer(60_000, () => now);
    const first = issuer.current();
    expect(issuer.valid(first)).toBe(true);
    expect(issuer.current()).toBe(first);
    now += 60_000;
    const second = issuer.current();
    expect(second).not.toBe(first);
    expect(issuer.valid(first)).toBe(true);
    now += 60_000;
    expect(issuer.valid(first)).toBe(false);
    expect(issuer.valid(second)).toBe(true);
    expect(new NonceIssuer(60_000, () => now).valid(issuer.current())).toBe(false);
    for (const bad of [undefined, 42, '', 'x'.repeat(27), `${second}=`]) expect(issuer.valid(bad)).toBe(false);
  });
});
