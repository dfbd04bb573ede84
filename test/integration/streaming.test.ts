import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { request as httpRequest } from 'node:http';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';

describe('streaming through the sidecar', () => {
  let issuer: TestIssuer;
  let upstream: TestUpstream;
  let sidecar: RunningSidecar;
  let authorization: string;

  beforeEach(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    upstream = await startUpstream();
    sidecar = await startSidecar(testEnv(issuer, upstream, { UPSTREAM_TIMEOUT_SECONDS: '1' }));
    authorization = `Bearer ${await issuer.mint()}`;
  });
  afterEach(async () => {
    await sidecar.close();
    await upstream.close();
    await issuer.close();
  });

  it('delivers server-sent events one by one while the upstream is still writing, uncompressed', async () => {
    let writeNext: ((event: string) => void) | undefined;
    let endStream: (() => void) | undefined;
    upstream.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      writeNext = (event) => res.write(`data: ${event}\n\n`);
      endStream = () => res.end();
      writeNext('one');
    });
    const res = await request(`${sidecar.url}/mcp`, {
      headers: { authorization, accept: 'text/event-stream', 'accept-encoding': 'gzip, br' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(res.headers['content-encoding']).toBeUndefined();
    // For a proxy in front (nginx): do not buffer; for any cache in front: this user's only.
    expect(res.headers['x-accel-buffering']).toBe('no');
    expect(res.headers['cache-control']).toBe('private, no-cache');
    const reader = res.body[Symbol.asyncIterator]();
    // Each event arrives before the upstream writes the next one: nothing is held back.
    expect(String((await reader.next()).value)).toBe('data: one\n\n');
    writeNext!('two');
    expect(String((await reader.next()).value)).toBe('data: two\n\n');
    writeNext!('three');
    expect(String((await reader.next()).value)).toBe('data: three\n\n');
    endStream!();
    expect((await reader.next()).done).toBe(true);
  });

  it('sends the headers of a silent event stream at once (an MCP GET stream may not speak for minutes)', async () => {
    let endStream: (() => void) | undefined;
    upstream.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      endStream = () => res.end('data: bye\n\n');
    });
    // The upstream says nothing until the client has the headers: without them nothing moves.
    const res = await request(`${sidecar.url}/mcp`, { headers: { authorization, accept: 'text/event-stream' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    endStream!();
    expect(await res.body.text()).toBe('data: bye\n\n');
  });

  it('keeps a stream open past UPSTREAM_TIMEOUT_SECONDS (the timeout covers headers only)', async () => {
    upstream.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: first\n\n');
      // The second event comes after the 1 s header timeout has long passed.
      setTimeout(() => res.end('data: late\n\n'), 1500);
    });
    const res = await request(`${sidecar.url}/stream`, { headers: { authorization } });
    expect(await res.body.text()).toBe('data: first\n\ndata: late\n\n');
  });

  it('streams a 1 MB request body to the upstream unchanged, with method, path and query intact', async () => {
    const body = Buffer.alloc(1 << 20, 'x').toString() + 'end';
    const path = '/a%20b/c%2Fd?q=1&q=2&name=%E6%97%A5&empty=';
    const res = await request(`${sidecar.url}${path}`, {
      method: 'PUT',
      headers: { authorization, 'content-type': 'application/octet-stream' },
      body,
    });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    expect(upstream.seen[0]).toMatchObject({ method: 'PUT', url: path });
    expect(upstream.seen[0]!.body).toBe(body);
  });

  it('closes the upstream request when the client goes away mid-stream', async () => {
    const upstreamClosed = new Promise<void>((resolve) => {
      upstream.handle((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: hello\n\n');
        res.once('close', () => resolve());
      });
    });
    const controller = new AbortController();
    const res = await request(`${sidecar.url}/mcp`, { headers: { authorization }, signal: controller.signal });
    const reader = res.body[Symbol.asyncIterator]();
    await reader.next();
    controller.abort();
    await upstreamClosed; // bounded by the test timeout
  });
  it('closes the upstream request when the client goes away before the upstream has answered', async () => {
    // A header timeout far beyond the test's: only the client's disconnect can close this request.
    await sidecar.close();
    sidecar = await startSidecar(testEnv(issuer, upstream, { UPSTREAM_TIMEOUT_SECONDS: '3600' }));
    let arrived!: () => void;
    const upstreamHasRequest = new Promise<void>((resolve) => (arrived = resolve));
    const upstreamClosed = new Promise<void>((resolve) => {
      upstream.handle((_req, res) => {
        res.once('close', () => resolve());
        arrived(); // and never answer
      });
    });
    const controller = new AbortController();
    const pending = request(`${sidecar.url}/mcp`, { headers: { authorization }, signal: controller.signal }).catch((error: Error) => error);
    await upstreamHasRequest;
    controller.abort();
    expect(await pending).toBeInstanceOf(Error);
    await upstreamClosed; // bounded by the test timeout
    const metrics = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
    // The client left: not an upstream failure.
    expect(metrics).toMatch(/^mcp_auth_upstream_failures_total\{kind="reset"\} 0$/m);
  });

  it('counts an upstream that breaks off mid-response as kind="reset" and cuts the client response short', async () => {
    upstream.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: one\n\n', () => res.socket!.resetAndDestroy());
    });
    const res = await request(`${sidecar.url}/mcp`, { headers: { authorization } });
    expect(res.statusCode).toBe(200);
    await expect(res.body.text()).rejects.toThrow();
    const metrics = await (await request(`${sidecar.adminUrl}/metrics`)).body.text();
    expect(metrics).toMatch(/^mcp_auth_upstream_failures_total\{kind="reset"\} 1$/m);
  });

  it('forwards a request whose client waits for 100 Continue before sending the body', async () => {
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${sidecar.url}/mcp`, {
        method: 'POST',
        headers: { authorization, expect: '100-continue', 'content-type': 'application/json', 'content-length': '2' },
      });
      req.once('continue', () => req.end('{}'));
      req.once('response', (res) => {
        let body = '';
        res
          .setEncoding('utf8')
          .on('data', (chunk: string) => (body += chunk))
          .once('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.once('error', reject);
    });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ ok: true, user: 'alice' });
    expect(upstream.seen[0]).toMatchObject({ method: 'POST', body: '{}' });
    expect(upstream.seen[0]!.headers.expect).toBeUndefined();
  });
});
