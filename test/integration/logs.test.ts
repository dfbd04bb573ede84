import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { SignJWT } from 'jose';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { BufferedOutput, createLogger, createRequestLogger, type RequestLine } from '../../src/observability/log.js';

describe('logs', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let broken: RunningSidecar;
  const output: string[] = [];
  const secrets: string[] = [];
  const lines = () =>
    output
      .flatMap((chunk) => chunk.split('\n'))
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    const logger = createLogger(
      'trace',
      new Writable({
        write(chunk, _e, done) {
          output.push(String(chunk));
          done();
        },
      }),
    );
    const env = testEnv(issuer, upstream, { LOG_LEVEL: 'trace', REQUIRED_ROLES: 'datastore-reader,default-roles-coder' });
    sidecar = await startSidecar(env, { logger });
    broken = await startSidecar({ ...env, OIDC_JWKS_URI: 'http://127.0.0.1:1/certs', UPSTREAM_URL: 'http://127.0.0.1:1' }, { logger });
  });
  afterAll(async () => {
    await sidecar.close();
    await broken.close();
    await upstream.close();
    await issuer.close();
  });

  it('never contain a token, an Authorization value or a cookie, on any path at any level', async () => {
    const now = Math.floor(Date.now() / 1000);
    const tokens = [
      await issuer.mint(),
      await issuer.mint({ exp: now - 3600 }),
      await issuer.mint({ iss: 'https://evil.example.com' }),
      await issuer.mint({ azp: 'grafana' }),
      await issuer.mint({ typ: 'Refresh' }),
      await issuer.mint({}, { omit: ['preferred_username'] }),
      await issuer.mint({ preferred_username: 'x\ny' }),
      await issuer.mint({ realm_access: { roles: [] } }),
      await issuer.mint({}, { header: { kid: 'unknown' } }),
      await new SignJWT({ a: 1 }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('k')),
      `${(await issuer.mint()).slice(0, -4)}AAAA`,
      'not.a.jwt-but-secret-looking-value',
    ];
    secrets.push(...tokens, 'cookie-secret-value', 'basic-secret');
    for (const token of tokens) {
      for (const target of [sidecar, broken]) {
        const res = await request(`${target.url}/mcp?access_token=${tokens[0]}`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            cookie: 'session=cookie-secret-value',
            'x-forwarded-for': tokens[0]!,
            'content-type': 'application/json',
          },
          body: JSON.stringify({ token }),
        });
        await res.body.text();
      }
    }
    await (await request(`${sidecar.url}/mcp`, { headers: { authorization: 'Basic basic-secret' } })).body.text();
    const all = output.join('');
    for (const secret of secrets) expect(all).not.toContain(secret);
    expect(all.toLowerCase()).not.toContain('bearer ');
    expect(all).not.toContain('cookie-secret');
    // Rejections, an upstream failure and a key set failure were all logged.
    const reasons = new Set(
      lines()
        .map((l) => l.reason)
        .filter(Boolean),
    );
    for (const reason of [
      'expired',
      'wrong_issuer',
      'wrong_audience',
      'wrong_token_type',
      'missing_claim',
      'invalid_claim',
      'forbidden',
      'unknown_key',
      'unsupported_algorithm',
      'invalid_signature',
      'malformed_token',
      'missing_token',
      'jwks_unavailable',
    ]) {
      expect(reasons, reason).toContain(reason);
    }
    expect(lines().some((l) => l.msg === 'key set refresh failed')).toBe(true);
  });

  it("write one line per request with the documented fields and the sidecar's own request id, the client's beside it", async () => {
    output.length = 0;
    upstream.seen.length = 0;
    const token = await issuer.mint();
    const accepted = await request(`${sidecar.url}/mcp/tools?cursor=secret-cursor`, {
      headers: { authorization: `Bearer ${token}`, 'x-request-id': 'req-123' },
    });
    await accepted.body.text();
    const rejected = await request(`${sidecar.url}/mcp`, { headers: { 'x-request-id': 'bad id\twith spaces' } });
    await rejected.body.text();

    // Ours, whatever the client sent: a client must not choose the id our lines carry.
    const own = String(accepted.headers['x-request-id']);
    expect(own).toMatch(/^[0-9a-f-]{36}$/);
    expect(upstream.seen[0]!.headers['x-request-id']).toBe(own);
    const generated = String(rejected.headers['x-request-id']);
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);

    const requestLines = lines().filter((l) => l.msg === 'request');
    expect(requestLines).toHaveLength(2);
    expect(requestLines[0]).toMatchObject({
      reqId: own,
      clientRequestId: 'req-123',
      method: 'GET',
      path: '/mcp/tools',
      status: 200,
      decision: 'accept',
      user: 'alice',
      subject: 'f0a4c2de-5b1e-4a7d-9c3b-2e8f1d6a7b90',
      durationMs: expect.any(Number),
    });
    expect(requestLines[1]).toMatchObject({
      reqId: generated,
      clientRequestId: 'bad id\twith spaces',
      method: 'GET',
      path: '/mcp',
      status: 401,
      decision: 'reject',
      reason: 'missing_token',
    });
    expect(output.join('')).not.toContain('secret-cursor');

    // Lines logged through the request's own logger (made on first use) carry its id too.
    upstream.handle((req) => req.socket.destroy());
    const failed = await request(`${sidecar.url}/mcp`, { headers: { authorization: `Bearer ${token}`, 'x-request-id': 'req-456' } });
    await failed.body.text();
    expect(failed.statusCode).toBe(502);
    expect(lines().find((l) => l.msg === 'upstream request failed')).toMatchObject({
      reqId: failed.headers['x-request-id'],
      kind: 'reset',
    });
    // However long the client's id, the line keeps 128 bytes of it.
    const long = await request(`${sidecar.url}/mcp`, { headers: { 'x-request-id': 'x'.repeat(10_000) } });
    await long.body.text();
    expect(lines().find((l) => l.reqId === long.headers['x-request-id'])).toMatchObject({ clientRequestId: `${'x'.repeat(128)}…` });
  });
});

describe('BufferedOutput (the stdout destination)', () => {
  /** A real Writable whose reader can be stalled: what it has not taken yet counts as pending. */
  function stallableOutput() {
    const written: string[] = [];
    let stalled = false;
    const held: (() => void)[] = [];
    const output = new Writable({
      highWaterMark: 1,
      write(chunk, _encoding, done) {
        written.push(String(chunk));
        if (stalled) held.push(done);
        else done();
      },
    });
    return {
      output,
      written,
      stall: () => {
        stalled = true;
      },
      drain: () => {
        stalled = false;
        for (const done of held.splice(0)) done();
      },
    };
  }
  const line = (n: number) => `${JSON.stringify({ level: 30, msg: 'request', n })}\n`;

  it('writes lines in batches, all of them once flushed, and calls back when written', async () => {
    const { output, written } = stallableOutput();
    const buffered = new BufferedOutput(output);
    for (let n = 0; n < 3; n++) buffered.write(line(n));
    expect(written).toEqual([]);
    await new Promise<void>((resolve) => buffered.flush(resolve));
    expect(written).toEqual([line(0) + line(1) + line(2)]);
    for (let n = 0; n < 500; n++) buffered.write(line(n)); // more than one batch of 16 KiB
    expect(written.length).toBeGreaterThan(1);
  });

  it('drops lines rather than grow without bound while stdout does not keep up, and says how many', async () => {
    const { output, written, stall, drain } = stallableOutput();
    const buffered = new BufferedOutput(output);
    stall();
    const big = `${'x'.repeat(1 << 20)}\n`;
    for (let n = 0; n < 8; n++) buffered.write(big); // over 8 MiB taken by a reader that does not read
    expect(output.writableLength).toBeGreaterThan(8 << 20);
    buffered.write(line(1));
    buffered.write(line(2));
    buffered.flush();
    drain();
    buffered.write(line(3));
    await new Promise<void>((resolve) => buffered.flush(resolve));
    const last = written.at(-1)!.split('\n');
    expect(JSON.parse(last[0]!)).toMatchObject({ level: 40, dropped: 2, msg: 'log lines dropped: stdout did not keep up' });
    expect(last[1]).toBe(line(3).trim());
    expect(written.join('')).not.toContain('"n":1');
  });
});

describe('the request line', () => {
  const accepted: RequestLine = {
    reqId: 'req-1',
    method: 'GET',
    path: '/mcp',
    status: 200,
    durationMs: 1.234,
    decision: 'accept',
    reason: undefined,
    user: 'alice',
    subject: 'f0a4c2de-5b1e-4a7d-9c3b-2e8f1d6a7b90',
    aborted: false,
  };
  const rejected: RequestLine = {
    reqId: 'c3c1e3a0-8d3e-4f61-9a53-3c1b1f0e9d11',
    method: 'POST',
    path: '/a"b\\c/%22/\u2028/é/\u{1F600}',
    status: 401,
    durationMs: 0,
    decision: 'reject',
    reason: 'missing_token',
    user: undefined,
    subject: undefined,
    aborted: true,
  };
  const odd: RequestLine = { ...accepted, user: 'zoë "z" \\ \ud800', subject: undefined, durationMs: 12345.678 };

  it("is the JSON pino writes for the same fields, with the logger's bindings, and only at info or below", () => {
    const written: string[] = [];
    const destination = {
      write: (line: string) => {
        written.push(line);
      },
    };
    for (const logger of [createLogger('info', destination), createLogger('info', destination).child({ listener: 'proxy' })]) {
      const logRequest = createRequestLogger(logger);
      for (const line of [accepted, rejected, odd]) {
        written.length = 0;
        logRequest(line);
        logger.info({ ...line, aborted: line.aborted || undefined }, 'request');
        expect(written).toHaveLength(2);
        const [ours, pinos] = written.map((text) => JSON.parse(text) as Record<string, unknown>);
        expect(Object.keys(ours!)).toEqual(Object.keys(pinos!));
        expect(ours).toEqual({ ...pinos, time: ours!.time });
        expect(Math.abs(Number(ours!.time) - Number(pinos!.time))).toBeLessThan(1000);
        expect(written[0]!.endsWith('}\n')).toBe(true);
      }
    }
    written.length = 0;
    createRequestLogger(createLogger('warn', destination))(accepted);
    expect(written).toEqual([]);
  });
});
