import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import fc from 'fast-check';
import { Lru } from '../../src/lib/lru.js';
import { DIGEST_LENGTH, VerdictTable } from '../../src/auth/verdict-table.js';
import type { VerificationKey } from '../../src/auth/keyset.js';
import type { Verdict } from '../../src/auth/verify.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import type { RemoteKeySet } from '../../src/auth/keyset.js';

describe('the verdict cache', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;

  async function start(env: Record<string, string> = {}, now?: () => number) {
    issuer = await startIssuer();
    await issuer.addKey('RS256', { kid: 'key-a' });
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream, env), now ? { now } : {});
  }
  afterEach(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });
  const call = async (token: string) => {
    const res = await request(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${token}` } });
    const body = (await res.body.json()) as { reason?: string };
    return [res.statusCode, body.reason] as const;
  };
  const lookups = async () => {
    const text = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
    const count = (result: string) =>
      Number(new RegExp(`^mcp_auth_verdict_cache_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
    return { hit: count('hit'), miss: count('miss') };
  };

  it('serves a verified token from the cache, and still lets it expire on time', async () => {
    let clock = Date.now();
    await start({}, () => clock);
    const token = await issuer.mint({ exp: Math.floor(clock / 1000) + 60 });
    expect(await call(token)).toEqual([200, undefined]);
    expect(await call(token)).toEqual([200, undefined]);
    expect(await lookups()).toEqual({ hit: 1, miss: 1 });
    clock += 60_000 + 29_000; // within the 30 s tolerance
    expect(await call(token)).toEqual([200, undefined]);
    clock += 2_000;
    expect(await call(token)).toEqual([401, 'expired']);
    expect(await lookups()).toEqual({ hit: 2, miss: 2 });
  });

  it('drops the verdicts of a key the moment a refresh removes it', async () => {
    await start();
    const token = await issuer.mint();
    expect(await call(token)).toEqual([200, undefined]);
    expect(await call(token)).toEqual([200, undefined]);
    await issuer.addKey('RS256', { kid: 'key-b' });
    issuer.removeKey('key-a');
    await (sidecar.app.keys as RemoteKeySet).refresh();
    expect(await call(token)).toEqual([401, 'unknown_key']);
  });

  it('keeps a verdict across a refresh that keeps its key', async () => {
    await start();
    const token = await issuer.mint();
    await call(token);
    await (sidecar.app.keys as RemoteKeySet).refresh();
    expect(await call(token)).toEqual([200, undefined]);
    expect((await lookups()).hit).toBe(1);
  });

  it('is bounded: the least recently used verdict goes first', async () => {
    await start({ VERDICT_CACHE_SIZE: '2' });
    const [t1, t2, t3] = await Promise.all([issuer.mint(), issuer.mint(), issuer.mint()]);
    for (const token of [t1!, t2!, t1!, t3!]) await call(token); // t2 is now the oldest
    expect(await lookups()).toEqual({ hit: 1, miss: 3 });
    await call(t1!);
    await call(t2!);
    expect(await lookups()).toEqual({ hit: 2, miss: 4 });
  });

  it('can be turned off (VERDICT_CACHE_SIZE=0)', async () => {
    await start({ VERDICT_CACHE_SIZE: '0' });
    const token = await issuer.mint();
    await call(token);
    await call(token);
    expect(await lookups()).toEqual({ hit: 0, miss: 0 });
    const bad = await issuer.mint({ typ: 'ID' });
    expect(await call(bad)).toEqual([401, 'wrong_token_type']);
  });
  it('remembers a rejection reached with a key: a retried bad or expired token costs no second signature check', async () => {
    await start();
    const good = await issuer.mint();
    const badSignature = `${good.slice(0, -8)}AAAAAAAA`;
    const expired = await issuer.mint({ exp: Math.floor(Date.now() / 1000) - 3600 });
    for (const [token, reason] of [
      [badSignature, 'invalid_signature'],
      [expired, 'expired'],
    ] as const) {
      const before = await lookups();
      expect(await call(token)).toEqual([401, reason]);
      expect(await call(token)).toEqual([401, reason]);
      expect(await lookups()).toEqual({ hit: before.hit + 1, miss: before.miss + 1 });
    }
    expect(upstream.seen).toHaveLength(0);
  });

  it('remembers a malformed token or a refused header for good, across a change of the key set', async () => {
    await start();
    const good = await issuer.mint();
    const [header, payload, signature] = good.split('.') as [string, string, string];
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${payload}.`;
    for (const [token, reason] of [
      [`${header}.${payload}`, 'malformed_token'],
      [`${header}.${payload}.${signature}.x.y`, 'malformed_token'],
      [none, 'unsupported_algorithm'],
    ] as const) {
      const before = await lookups();
      expect(await call(token)).toEqual([401, reason]);
      await issuer.addKey('RS256', { kid: `key-${before.miss}` });
      await (sidecar.app.keys as RemoteKeySet).refresh();
      expect(await call(token)).toEqual([401, reason]);
      expect(await lookups()).toEqual({ hit: before.hit + 1, miss: before.miss + 1 });
    }
  });

  it('never remembers "not yet valid": the same token is accepted once its time has come', async () => {
    let clock = Date.now();
    await start({}, () => clock);
    const token = await issuer.mint({ nbf: Math.floor(clock / 1000) + 120, iat: Math.floor(clock / 1000) });
    expect(await call(token)).toEqual([401, 'not_yet_valid']);
    expect(await call(token)).toEqual([401, 'not_yet_valid']);
    expect(await lookups()).toEqual({ hit: 0, miss: 2 });
    clock += 120_000;
    expect(await call(token)).toEqual([200, undefined]);
  });

  it('forgets a remembered rejection when its key leaves the key set', async () => {
    await start();
    const badSignature = `${(await issuer.mint()).slice(0, -8)}AAAAAAAA`;
    expect(await call(badSignature)).toEqual([401, 'invalid_signature']);
    await issuer.addKey('RS256', { kid: 'key-b' });
    issuer.removeKey('key-a');
    await (sidecar.app.keys as RemoteKeySet).refresh();
    expect(await call(badSignature)).toEqual([401, 'unknown_key']);
  });

  it('remembers an unknown key only until a refetch may bring it: a key published later is accepted after the cooldown', async () => {
    let clock = Date.now();
    await start({}, () => clock);
    const later = await issuer.addKey('RS256', { kid: 'key-later', publish: false });
    const token = await issuer.mint({ exp: Math.floor(clock / 1000) + 3600 }, { key: later });
    const fetches = issuer.requests.jwks;
    expect(await call(token)).toEqual([401, 'unknown_key']); // waited for the refetch it started
    expect(await call(token)).toEqual([401, 'unknown_key']); // within the cooldown: remembered
    const before = await lookups();
    expect(await call(token)).toEqual([401, 'unknown_key']);
    expect(await lookups()).toEqual({ hit: before.hit + 1, miss: before.miss });
    expect(issuer.requests.jwks).toBe(fetches + 1);
    issuer.publishKey('key-later');
    clock += 30_000; // the cooldown is over: the retry goes to the issuer, not to the memory
    expect(await call(token)).toEqual([200, undefined]);
    expect(issuer.requests.jwks).toBe(fetches + 2);
  });

  it('forgets a remembered unknown key as soon as the key set changes', async () => {
    await start();
    const later = await issuer.addKey('RS256', { kid: 'key-later', publish: false });
    const token = await issuer.mint({}, { key: later });
    await call(token);
    expect(await call(token)).toEqual([401, 'unknown_key']);
    issuer.publishKey('key-later');
    await (sidecar.app.keys as RemoteKeySet).refresh();
    expect(await call(token)).toEqual([200, undefined]);
  });

  it('keeps good verdicts through a flood of distinct bad tokens (rejections have a store of their own)', async () => {
    await start({ VERDICT_CACHE_SIZE: '2' });
    const good = await issuer.mint();
    await call(good);
    for (const n of [1, 2, 3, 4]) expect((await call(`${(await issuer.mint({ n })).slice(0, -8)}AAAAAAAA`))[1]).toBe('invalid_signature');
    const before = await lookups();
    expect(await call(good)).toEqual([200, undefined]);
    expect((await lookups()).hit).toBe(before.hit + 1);
  });
});

/** One step against a bounded map and its model: get, set or delete one of 21 keys. */
const operation = fc.oneof(
  fc.record({ op: fc.constant('get' as const), key: fc.integer({ min: 0, max: 20 }) }),
  fc.record({ op: fc.constant('set' as const), key: fc.integer({ min: 0, max: 20 }) }),
  fc.record({ op: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 20 }) }),
);

describe('Lru', () => {
  it('holds what a plain least-recently-used list holds, through any sequence of gets, sets and deletes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(operation, { maxLength: 300 }), (max, operations) => {
        const lru = new Lru<number>(max);
        let model: number[] = []; // least recently used first
        operations.forEach(({ op, key }, i) => {
          const name = String(key);
          if (op === 'get') {
            expect(lru.get(name) !== undefined).toBe(model.includes(key));
            if (model.includes(key)) model = [...model.filter((k) => k !== key), key];
          } else if (op === 'set') {
            lru.set(name, i);
            model = [...model.filter((k) => k !== key), key].slice(-max);
          } else {
            lru.delete(name);
            model = model.filter((k) => k !== key);
          }
          expect(lru.size).toBe(model.length);
        });
        for (const key of model) expect(lru.get(String(key))).toBeDefined();
      }),
    );
  });
});

describe('VerdictTable', () => {
  // Digests whose first word, the table's hash, takes only three values: long probe runs, and
  // removals that shift entries back across them. The other bytes tell the keys apart.
  const digest = (key: number) => String.fromCharCode(key % 3, 0, 0, 0, key, 255 - key).padEnd(DIGEST_LENGTH, '\xff');
  const verdict = (n: number): Verdict => ({
    identity: { user: `user-${n}`, subject: undefined, email: undefined, groups: undefined },
    key: { kid: `kid-${n}` } as unknown as VerificationKey,
    validUntilMs: 1_700_000_000_000 + n,
  });

  it('holds what a plain least-recently-used map holds, through any sequence of gets, sets and deletes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(operation, { maxLength: 300 }), (max, operations) => {
        const table = new VerdictTable(max);
        const model = new Map<number, number>(); // key → what was set, least recently used first
        const use = (key: number, value: number) => {
          model.delete(key);
          model.set(key, value);
        };
        operations.forEach(({ op, key }, i) => {
          if (op === 'get') {
            const value = model.get(key);
            expect(table.get(digest(key))).toEqual(value === undefined ? undefined : verdict(value));
            if (value !== undefined) use(key, value);
          } else if (op === 'set') {
            table.set(digest(key), verdict(i));
            use(key, i);
            if (model.size > max) model.delete(model.keys().next().value!);
          } else {
            table.delete(digest(key));
            model.delete(key);
          }
          expect(table.size).toBe(model.size);
        });
        for (const [key, value] of model) expect(table.get(digest(key))).toEqual(verdict(value));
      }),
    );
  });

  it('takes only SHA-256 digests in Latin-1', () => {
    expect(() => new VerdictTable(4).get('too short')).toThrow(/32 Latin-1 characters/);
  });
});
