import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Agent, request } from 'undici';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';

const b64 = (text: string) => Buffer.from(text).toString('base64url');

describe('fuzzing the Authorization header and token parts', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let good: string[];
  const agent = new Agent({ connections: 8 });

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream));
    good = (await issuer.mint()).split('.');
  });
  afterAll(async () => {
    await agent.close();
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  const send = async (authorization: string) => {
    const res = await request(`${sidecar.url}/mcp`, { dispatcher: agent, headers: { authorization } });
    await res.body.text();
    return res.statusCode;
  };
  // Header values a client can send: visible ASCII and spaces (undici refuses control characters itself).
  const headerText = fc.string({
    unit: fc.constantFrom(...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i))),
    maxLength: 300,
  });

  it('arbitrary Authorization values: never a 5xx, never the upstream', async () => {
    await fc.assert(
      fc.asyncProperty(headerText, async (value) => {
        const status = await send(value);
        expect([401]).toContain(status);
      }),
      { numRuns: 300 },
    );
    expect(upstream.seen).toHaveLength(0);
  });

  it('a real token with any part replaced by random JSON or bytes: rejected, never a 5xx', async () => {
    const part = fc.oneof(
      fc.json().map(b64),
      fc.object().map((o) => b64(JSON.stringify(o))),
      fc
        .record({
          alg: fc.constantFrom('RS256', 'ES256', 'none', 'HS256', 'EdDSA'),
          kid: fc.oneof(fc.string(), fc.integer()),
          crit: fc.option(fc.array(fc.string())),
        })
        .map((h) => b64(JSON.stringify(h))),
      fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes).toString('base64url')),
      fc.string({ maxLength: 50 }).map((s) => s.replace(/[^A-Za-z0-9_.-]/g, '')),
    );
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: 2 }), part, async (index, replacement) => {
        const parts = [...good];
        parts[index] = replacement;
        const status = await send(`Bearer ${parts.join('.')}`);
        expect(status).toBe(401);
      }),
      { numRuns: 300 },
    );
    expect(upstream.seen).toHaveLength(0);
  });
});
