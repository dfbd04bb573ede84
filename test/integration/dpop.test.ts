// DPoP (RFC 9449) end to end with the test issuer: DPoP-bound tokens (typ DPoP, cnf.jkt) accepted
// only with the DPoP scheme and a fresh proof for this request, every bad proof refused with its
// reason and a DPoP challenge, the verdict cache never skipping a proof, nonces, the metadata
// document, audit lines and the tool policy seeing the binding, and the proof check's span.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, startStack, testEnv, type RunningSidecar, type TestStack } from '../helpers/sidecar.js';
import { createDpopKey, createProof, type DpopKey } from '../helpers/dpop.js';
import { captureLog } from '../helpers/log-capture.js';
import { waitFor } from '../helpers/redis-ha.js';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HTU = 'http://mcp.test:8080/mcp';
const METADATA = 'http://mcp.test:8080/.well-known/oauth-protected-resource';
const ALGS = 'RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA';
const now = () => Math.floor(Date.now() / 1000);

interface Answer {
  status: number;
  reason: string | undefined;
  error: string | undefined;
  challenges: string[];
  nonce: string | undefined;
}

/** POST /mcp (or `path`) with the given Authorization and DPoP header values. */
async function send(
  url: string,
  authorization: string | undefined,
  proofs: string[] = [],
  { method = 'POST', path = '/mcp', body = '{"jsonrpc":"2.0","id":1,"method":"ping"}' } = {},
): Promise<Answer> {
  const headers = [
    'content-type',
    'application/json',
    ...(authorization === undefined ? [] : ['authorization', authorization]),
    ...proofs.flatMap((p) => ['dpop', p]),
  ];
  const res = await request(`${url}${path}`, { method: method as 'POST', headers, body: method === 'GET' ? undefined : body });
  const text = await res.body.text();
  const json = res.statusCode >= 400 ? (JSON.parse(text) as { reason?: string; error?: string }) : {};
  const challenge = res.headers['www-authenticate'];
  return {
    status: res.statusCode,
    reason: json.reason,
    error: json.error,
    challenges: challenge === undefined ? [] : Array.isArray(challenge) ? challenge : [challenge],
    nonce: res.headers['dpop-nonce'] as string | undefined,
  };
}

describe('DPoP-bound tokens with DPOP=allow', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let key: DpopKey;
  let token: string;
  const proof = (options: Partial<Parameters<typeof createProof>[1]> = {}, withKey: DpopKey = key) =>
    createProof(withKey, { htm: 'POST', htu: HTU, token, ...options });

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey('RS256');
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream, { DPOP: 'allow' }));
    key = await createDpopKey('ES256');
    token = await issuer.mint({ typ: 'DPoP', cnf: { jkt: key.jkt } });
  });
  afterAll(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  it('accepts every request with a fresh proof and passes neither token nor proof to the upstream', async () => {
    for (let i = 0; i < 3; i++) {
      const seen = upstream.seen.length;
      expect(await send(sidecar.url, `DPoP ${token}`, [await proof()])).toMatchObject({ status: 200 });
      const headers = upstream.seen[seen]!.headers;
      expect(headers['x-verified-user']).toBe('alice');
      expect(headers.authorization).toBeUndefined();
      expect(headers.dpop).toBeUndefined();
    }
    // The scheme is case-insensitive; so is the DPoP header's name.
    expect((await send(sidecar.url, `dpop ${token}`, [await proof()])).status).toBe(200);
  });

  it('accepts proofs signed with each asymmetric algorithm family', async () => {
    for (const alg of ['RS256', 'PS256', 'ES384', 'EdDSA']) {
      const other = await createDpopKey(alg);
      const bound = await issuer.mint({ typ: 'DPoP', cnf: { jkt: other.jkt } });
      expect(
        (await send(sidecar.url, `DPoP ${bound}`, [await createProof(other, { htm: 'POST', htu: HTU, token: bound })])).status,
        alg,
      ).toBe(200);
    }
  });

  it('still accepts plain bearer tokens (allow)', async () => {
    expect((await send(sidecar.url, `Bearer ${await issuer.mint()}`)).status).toBe(200);
  });

  it('matches htu after normalisation: host case, default port, percent-encoding of unreserved characters; query ignored', async () => {
    for (const htu of [
      'HTTP://MCP.TEST:8080/mcp',
      'http://mcp.test:8080/%6Dcp',
      'http://mcp.test:8080/mcp?x=1#f',
      'http://mcp.test:8080/a/../mcp',
    ]) {
      expect((await send(sidecar.url, `DPoP ${token}`, [await proof({ htu })])).status, htu).toBe(200);
    }
    expect((await send(sidecar.url, `DPoP ${token}`, [await proof()], { path: '/mcp?session=1' })).status).toBe(200);
  });

  const refusals: [string, () => Promise<{ authorization: string | undefined; proofs: string[] }>, string, string?][] = [
    ['a missing proof', async () => ({ authorization: `DPoP ${token}`, proofs: [] }), 'invalid_dpop_proof', 'no DPoP proof header'],
    [
      'two DPoP headers',
      async () => ({ authorization: `DPoP ${token}`, proofs: [await proof(), await proof()] }),
      'invalid_dpop_proof',
      'several DPoP headers',
    ],
    ['a proof that is not a JWT', async () => ({ authorization: `DPoP ${token}`, proofs: ['not.a-proof'] }), 'invalid_dpop_proof'],
    [
      'a proof for another URL',
      async () => ({ authorization: `DPoP ${token}`, proofs: [await proof({ htu: 'http://mcp.test:8080/other' })] }),
      'invalid_dpop_proof',
      'DPoP proof htu is not the URL of the request',
    ],
    [
      'a proof for another host',
      async () => ({ authorization: `DPoP ${token}`, proofs: [await proof({ htu: 'http://evil.test:8080/mcp' })] }),
      'invalid_dpop_proof',
    ],
    [
      'a proof for https where the resource is http',
      async () => ({ authorization: `DPoP ${token}`, proofs: [await proof({ htu: 'https://mcp.test:8080/mcp' })] }),
      'invalid_dpop_proof',
    ],
    [
      'a proof for another method',
      async () => ({ authorization: `DPoP ${token}`, proofs: [await proof({ htm: 'GET' })] }),
      'invalid_dpop_proof',
      'DPoP proof htm is not the request method',
    ],
    [
      'a proof by a different key',
      async () => ({ authorization: `DPoP ${token}`, proofs: [await proof({}, await createDpopKey())] }),
      'dpop_binding_mismatch',
    ],
    [
      "a proof naming the token's key but signed by another",
      async () => ({ authorization: `DPoP ${token}`, proofs: [await proof({ signWith: (await createDpopKey()).privateKey })] }),
      'invalid_dpop_proof',
      'DPoP proof signature is invalid',
    ],
    [
      'a proof for another token (ath)',
      async () => ({
        authorization: `DPoP ${token}`,
        proofs: [await proof({ token: await issuer.mint({ typ: 'DPoP', cnf: { jkt: key.jkt } }) })],
      }),
      'invalid_dpop_proof',
      'DPoP proof ath is not the hash of the token',
    ],
    [
      'a proof without ath',
      async () => ({ authorization: `DPoP ${token}`, proofs: [await proof({ claims: { ath: undefined } })] }),
      'invalid_dpop_proof',
    ],
    [
      'an expired proof',
      async () => ({ authorization: `DPoP ${token}`, proofs: [await proof({ iat: now() - 120 })] }),
      'invalid_dpop_proof',
      'DPoP proof is too old (iat)',
    ],
    [
      'a proof from the future',
      async () => ({ authorization: `DPoP ${token}`, proofs: [await proof({ iat: now() + 120 })] }),
      'invalid_dpop_proof',
      'DPoP proof was issued in the future (iat)',
    ],
    [
      'a proof without jti',
      async () => ({ authorization: `DPoP ${token}`, proofs: [await proof({ claims: { jti: undefined } })] }),
      'invalid_dpop_proof',
    ],
    [
      'typ JWT instead of dpop+jwt',
      async () => ({ authorization: `DPoP ${token}`, proofs: [await proof({ header: { typ: 'JWT' } })] }),
      'invalid_dpop_proof',
      'DPoP proof typ is not dpop+jwt',
    ],
    [
      'a private key in the jwk',
      async () => {
        const { privateKey } = await generateKeyPair('ES256', { extractable: true });
        const withPrivate = { ...(await exportJWK(privateKey)) };
        const owner: DpopKey = { ...key, privateKey, publicJwk: withPrivate };
        return { authorization: `DPoP ${token}`, proofs: [await proof({}, owner)] };
      },
      'invalid_dpop_proof',
      'DPoP proof jwk holds a private or symmetric key',
    ],
    [
      'an HS256 proof with a symmetric jwk',
      async () => {
        const secret = new TextEncoder().encode('0123456789abcdef0123456789abcdef');
        const proofText = await new SignJWT({ jti: 'x', htm: 'POST', htu: HTU, iat: now() })
          .setProtectedHeader({ typ: 'dpop+jwt', alg: 'HS256', jwk: { kty: 'oct', k: Buffer.from(secret).toString('base64url') } } as never)
          .sign(secret);
        return { authorization: `DPoP ${token}`, proofs: [proofText] };
      },
      'invalid_dpop_proof',
    ],
    [
      'a proof with alg none',
      async () => {
        const good = (await proof()).split('.');
        const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'none', jwk: key.publicJwk })).toString('base64url');
        return { authorization: `DPoP ${token}`, proofs: [`${header}.${good[1]}.${good[2]}`] };
      },
      'invalid_dpop_proof',
    ],
    [
      'a proof whose payload names htm twice',
      async () => {
        const good = (await proof()).split('.');
        const claims = JSON.parse(Buffer.from(good[1]!, 'base64url').toString()) as Record<string, unknown>;
        const text = JSON.stringify(claims).replace('"htm":"POST"', '"htm":"GET","htm":"POST"');
        return { authorization: `DPoP ${token}`, proofs: [`${good[0]}.${Buffer.from(text).toString('base64url')}.${good[2]}`] };
      },
      'invalid_dpop_proof',
      'DPoP proof payload has duplicate member names',
    ],
    [
      'the DPoP-bound token sent as Bearer',
      async () => ({ authorization: `Bearer ${token}`, proofs: [await proof()] }),
      'dpop_binding_mismatch',
    ],
    [
      'a token that is not bound, sent with the DPoP scheme',
      async () => {
        const plain = await issuer.mint();
        return { authorization: `DPoP ${plain}`, proofs: [await proof({ token: plain })] };
      },
      'dpop_binding_mismatch',
    ],
  ];

  it.each(refusals.map(([name, build, reason, description]) => ({ name, build, reason, description })))(
    'refuses $name: 401 $reason with a DPoP challenge, nothing upstream',
    async ({ build, reason, description }) => {
      const { authorization, proofs } = await build();
      const seen = upstream.seen.length;
      const res = await request(`${sidecar.url}/mcp`, {
        method: 'POST',
        headers: ['content-type', 'application/json', 'authorization', authorization!, ...proofs.flatMap((p) => ['dpop', p])],
        body: '{}',
      });
      const body = (await res.body.json()) as { error: string; reason: string; error_description: string };
      expect(res.statusCode).toBe(401);
      expect(body.reason).toBe(reason);
      if (description !== undefined) expect(body.error_description).toBe(description);
      const code = reason === 'invalid_dpop_proof' ? 'invalid_dpop_proof' : 'invalid_token';
      expect(body.error).toBe(code);
      expect(res.headers['www-authenticate']).toBe(
        `DPoP resource_metadata="${METADATA}", error="${code}", error_description="${body.error_description}", algs="${ALGS}"`,
      );
      expect(upstream.seen.length).toBe(seen);
    },
  );

  it('refuses a replayed proof (dpop_replay), even though the token verdict comes from the cache', async () => {
    const once = await proof();
    const hitsBefore = await cacheHits(sidecar);
    expect((await send(sidecar.url, `DPoP ${token}`, [once])).status).toBe(200);
    expect(await send(sidecar.url, `DPoP ${token}`, [once])).toMatchObject({
      status: 401,
      reason: 'dpop_replay',
      error: 'invalid_dpop_proof',
    });
    // The token was verified once, long ago: both lookups were cache hits, and the proof was checked anyway.
    expect((await cacheHits(sidecar)) - hitsBefore).toBe(2);
  });

  it('refuses the same jti in a new proof of the same key (replay of a captured jti)', async () => {
    const jti = `fixed-${Date.now()}`;
    expect((await send(sidecar.url, `DPoP ${token}`, [await proof({ jti })])).status).toBe(200);
    expect((await send(sidecar.url, `DPoP ${token}`, [await proof({ jti })])).reason).toBe('dpop_replay');
  });

  it('challenges with both schemes when no token comes (allow), and counts every reason from the start', async () => {
    const answer = await send(sidecar.url, undefined);
    expect(answer).toMatchObject({ status: 401, reason: 'missing_token' });
    expect(answer.challenges).toEqual([`Bearer resource_metadata="${METADATA}"`, `DPoP resource_metadata="${METADATA}", algs="${ALGS}"`]);
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    for (const reason of ['invalid_dpop_proof', 'dpop_replay', 'dpop_binding_mismatch', 'dpop_required', 'use_dpop_nonce']) {
      expect(metrics).toMatch(new RegExp(`^mcp_auth_rejected_total\\{reason="${reason}"\\} \\d+`, 'm'));
    }
  });

  it('publishes the DPoP algorithms in the metadata, DPoP-bound tokens not required', async () => {
    const document = (await (await fetch(`${sidecar.url}/.well-known/oauth-protected-resource`)).json()) as Record<string, unknown>;
    expect(document).toMatchObject({ dpop_signing_alg_values_supported: ALGS.split(' '), dpop_bound_access_tokens_required: false });
  });
});

async function cacheHits(sidecar: RunningSidecar): Promise<number> {
  const text = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
  return Number(/^mcp_auth_verdict_cache_total\{result="hit"\} (\d+)/m.exec(text)![1]);
}

describe('DPOP=require, DPOP=off, and nonces', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  const sidecars: RunningSidecar[] = [];
  const start = async (env: Record<string, string>) => {
    const sidecar = await startSidecar(testEnv(issuer, upstream, env));
    sidecars.push(sidecar);
    return sidecar;
  };

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey('ES256');
    upstream = await startUpstream();
  });
  afterEach(async () => {
    for (const sidecar of sidecars.splice(0)) await sidecar.close();
  });
  afterAll(async () => {
    await upstream.close();
    await issuer.close();
  });

  it('require: a bearer token is dpop_required, with a DPoP challenge only; the metadata says DPoP-bound tokens are required', async () => {
    const sidecar = await start({ DPOP: 'require', OIDC_ALGORITHMS: 'ES256,PS256' });
    const answer = await send(sidecar.url, `Bearer ${await issuer.mint()}`);
    expect(answer).toMatchObject({ status: 401, reason: 'dpop_required', error: 'invalid_token' });
    expect(answer.challenges).toEqual([
      `DPoP resource_metadata="${METADATA}", error="invalid_token", error_description="a DPoP-bound token sent with the DPoP scheme and a proof is required", algs="ES256 PS256"`,
    ]);
    expect((await send(sidecar.url, undefined)).challenges).toEqual([`DPoP resource_metadata="${METADATA}", algs="ES256 PS256"`]);
    const key = await createDpopKey('ES256');
    const token = await issuer.mint({ typ: 'DPoP', cnf: { jkt: key.jkt } });
    expect((await send(sidecar.url, `DPoP ${token}`, [await createProof(key, { htm: 'POST', htu: HTU, token })])).status).toBe(200);
    // The allowlist is the one of tokens: an RS256 proof is refused here.
    const rsa = await createDpopKey('RS256');
    const rsaToken = await issuer.mint({ typ: 'DPoP', cnf: { jkt: rsa.jkt } });
    expect((await send(sidecar.url, `DPoP ${rsaToken}`, [await createProof(rsa, { htm: 'POST', htu: HTU, token: rsaToken })])).reason).toBe(
      'invalid_dpop_proof',
    );
    const document = (await (await fetch(`${sidecar.url}/.well-known/oauth-protected-resource`)).json()) as Record<string, unknown>;
    expect(document).toMatchObject({ dpop_signing_alg_values_supported: ['ES256', 'PS256'], dpop_bound_access_tokens_required: true });
  });

  it('off: the DPoP scheme is not taken, a DPoP token is not an access token, a bound bearer token is refused; no DPoP metadata', async () => {
    const sidecar = await start({});
    const key = await createDpopKey();
    const token = await issuer.mint({ typ: 'DPoP', cnf: { jkt: key.jkt } });
    const proofText = await createProof(key, { htm: 'POST', htu: HTU, token });
    expect(await send(sidecar.url, `DPoP ${token}`, [proofText])).toMatchObject({ status: 401, reason: 'missing_token' });
    expect(await send(sidecar.url, `Bearer ${token}`, [proofText])).toMatchObject({ status: 401, reason: 'wrong_token_type' });
    // A token bound to a key yet typed Bearer is not a bearer token either.
    const boundBearer = await issuer.mint({ cnf: { jkt: key.jkt } });
    const answer = await send(sidecar.url, `Bearer ${boundBearer}`);
    expect(answer).toMatchObject({ status: 401, reason: 'dpop_binding_mismatch' });
    expect(answer.challenges).toEqual([
      `Bearer resource_metadata="${METADATA}", error="invalid_token", error_description="token is DPoP-bound: send it with the DPoP scheme and a proof"`,
    ]);
    const document = (await (await fetch(`${sidecar.url}/.well-known/oauth-protected-resource`)).json()) as Record<string, unknown>;
    expect(document).not.toHaveProperty('dpop_signing_alg_values_supported');
    expect(document).not.toHaveProperty('dpop_bound_access_tokens_required');
  });

  it('nonce: a proof without the nonce gets use_dpop_nonce and a DPoP-Nonce; the retry with it passes; a made-up nonce is refused', async () => {
    const sidecar = await start({ DPOP: 'require', DPOP_NONCE: 'on' });
    const key = await createDpopKey();
    const token = await issuer.mint({ typ: 'DPoP', cnf: { jkt: key.jkt } });
    const first = await send(sidecar.url, `DPoP ${token}`, [await createProof(key, { htm: 'POST', htu: HTU, token })]);
    expect(first).toMatchObject({ status: 401, reason: 'use_dpop_nonce', error: 'use_dpop_nonce' });
    expect(first.nonce).toMatch(/^[A-Za-z0-9_-]{27}$/);
    expect(first.challenges[0]).toMatch(/^DPoP resource_metadata="[^"]+", error="use_dpop_nonce", error_description="[^"]+", algs="/);
    const retry = await send(sidecar.url, `DPoP ${token}`, [await createProof(key, { htm: 'POST', htu: HTU, token, nonce: first.nonce })]);
    expect(retry.status).toBe(200);
    expect(retry.nonce).toBe(first.nonce);
    const forged = `${first.nonce!.slice(0, 10)}${first.nonce![10] === 'A' ? 'B' : 'A'}${first.nonce!.slice(11)}`;
    expect(
      (await send(sidecar.url, `DPoP ${token}`, [await createProof(key, { htm: 'POST', htu: HTU, token, nonce: forged })])).reason,
    ).toBe('use_dpop_nonce');
  });
});

describe('DPoP in the audit line and the tool policy', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  const log = captureLog();

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey('RS256');
    upstream = await startUpstream();
    upstream.handle((_req, res, body) => {
      const { id } = JSON.parse(body) as { id: number };
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ jsonrpc: '2.0', id, result: { content: [] } }));
    });
    const dir = mkdtempSync(join(tmpdir(), 'dpop-policy-'));
    const policy = join(dir, 'policy.yaml');
    // Writing tools only for tokens bound to a key: the policy reads the token's cnf claim.
    writeFileSync(
      policy,
      [
        'rules:',
        '  - name: reads-for-all',
        '    effect: allow',
        '    when: mcp.tool == "read"',
        '  - name: writes-only-with-dpop',
        '    effect: allow',
        '    when: mcp.tool == "write" && has(token.cnf.jkt)',
        '  - name: exports-only-with-dpop',
        '    effect: allow',
        '    when: mcp.tool == "export" && has(jwt.cnf) && has(jwt.cnf.jkt)',
        '',
      ].join('\n'),
    );
    sidecar = await startSidecar(testEnv(issuer, upstream, { DPOP: 'allow', POLICY_FILE: policy, LOG_LEVEL: 'info' }), {
      logger: log.logger,
    });
  });
  afterAll(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  const call = (tool: string, id: number) =>
    JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: tool, arguments: {} } });

  it('writes binding dpop or bearer, and rules on token.cnf or jwt.cnf let only the DPoP-bound token write', async () => {
    const key = await createDpopKey();
    const bound = await issuer.mint({ typ: 'DPoP', cnf: { jkt: key.jkt } });
    const plain = await issuer.mint();
    const dpopCall = async (tool: string, id: number) =>
      send(sidecar.url, `DPoP ${bound}`, [await createProof(key, { htm: 'POST', htu: HTU, token: bound })], { body: call(tool, id) });
    expect((await dpopCall('write', 1)).status).toBe(200);
    expect((await send(sidecar.url, `Bearer ${plain}`, [], { body: call('write', 2) })).status).toBe(200);
    expect((await send(sidecar.url, `Bearer ${plain}`, [], { body: call('read', 3) })).status).toBe(200);
    expect((await dpopCall('export', 4)).status).toBe(200);
    expect((await send(sidecar.url, `Bearer ${plain}`, [], { body: call('export', 5) })).status).toBe(200);
    const lines = await log.waitForAudit((line) => line.method === 'tools/call', 5);
    const byId = new Map(lines.map((line) => [line.rpcId, line]));
    expect(byId.get(1)).toMatchObject({ binding: 'dpop', tool: 'write', outcome: 'result' });
    expect(byId.get(2)).toMatchObject({ binding: 'bearer', tool: 'write', outcome: 'denied' });
    expect(byId.get(3)).toMatchObject({ binding: 'bearer', tool: 'read', outcome: 'result' });
    expect(byId.get(4)).toMatchObject({ binding: 'dpop', tool: 'export', outcome: 'result' });
    expect(byId.get(5)).toMatchObject({ binding: 'bearer', tool: 'export', outcome: 'denied' });
  });
});

describe('DPoP proof checks in the trace', () => {
  let stack: TestStack;
  let issuer: TestIssuer;
  let sidecar: RunningSidecar;
  const exporter = new InMemorySpanExporter();
  let key: DpopKey;
  let token: string;

  beforeAll(async () => {
    stack = await startStack(
      { DPOP: 'allow', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_BSP_SCHEDULE_DELAY: '10' },
      { spanExporter: exporter },
    );
    ({ issuer, sidecar } = stack);
    key = await createDpopKey('ES256');
    token = await issuer.mint({ typ: 'DPoP', cnf: { jkt: key.jkt } });
  });
  afterAll(async () => stack?.close());

  /** One request; the spans of its trace, once exported. */
  const traced = async (authorization: string, proofs: string[]) => {
    exporter.reset();
    const { status } = await send(sidecar.url, authorization, proofs);
    // The request's span ends when its response closes, which may come after the client has read it.
    const server = await waitFor('the request span exported', 5000, async () => {
      await sidecar.app.tracing!.flush();
      return exporter.getFinishedSpans().find((s) => s.kind === SpanKind.SERVER && s.name.startsWith('POST'));
    });
    const spans = exporter.getFinishedSpans();
    const check = spans.filter((s) => s.name === 'check DPoP proof');
    for (const span of check) {
      expect(span.spanContext().traceId).toBe(server.spanContext().traceId);
      expect(span.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
    }
    expect(JSON.stringify(spans.map((s) => s.attributes))).not.toContain(token);
    for (const proof of proofs) expect(JSON.stringify(spans.map((s) => s.attributes))).not.toContain(proof);
    return { status, check };
  };

  it('a span for each proof checked: none for a bearer token, an error span naming the reason for a replay', async () => {
    const proof = await createProof(key, { htm: 'POST', htu: HTU, token });
    const good = await traced(`DPoP ${token}`, [proof]);
    expect(good.status).toBe(200);
    expect(good.check).toHaveLength(1);
    expect(good.check[0]!.status.code).toBe(SpanStatusCode.UNSET);
    expect(good.check[0]!.attributes['error.type']).toBeUndefined();

    const replay = await traced(`DPoP ${token}`, [proof]);
    expect(replay.status).toBe(401);
    expect(replay.check).toHaveLength(1);
    expect(replay.check[0]!.status.code).toBe(SpanStatusCode.ERROR);
    expect(replay.check[0]!.attributes['error.type']).toBe('dpop_replay');

    const bearer = await traced(`Bearer ${await issuer.mint()}`, []);
    expect(bearer.status).toBe(200);
    expect(bearer.check).toEqual([]);
  });
});
