// npm run bench:limits: what the rate limits cost an allowed tools/call, in this process, against
// a real redis-server on loopback: µs per call (judge + settle, sequential: the latency a
// request sees) and packets written to Redis per call (socket writes: one is one round trip;
// counted until the call is allowed, and in all: the in-flight release at settle rides with the
// next call's checks here, in a sidecar it is a write of its own after the response),
// with all three limits (user, tool, in flight), with the user limit alone, in memory, and with
// no limit configured (no guard is built: nothing). Best of five passes of 5,000 calls.

import { Socket } from 'node:net';
import type { Logger } from 'pino';
import { loadConfig } from '../src/config/config.js';
import { createMetrics } from '../src/observability/metrics.js';
import { createLogger } from '../src/observability/log.js';
import { createLimits } from '../src/mcp/limits/index.js';
import type { Caller, ClientMessage } from '../src/mcp/guard.js';
import { startRedis } from '../test/helpers/redis.js';

const CALLS = 5_000;
const PASSES = 5;
const redis = await startRedis();
const logger = createLogger('silent') as Logger;

// Counts writes on sockets to the Redis port.
let writes = 0;
const write = Socket.prototype.write;
Socket.prototype.write = function (this: Socket, ...args: unknown[]) {
  if (this.remotePort === redis.port) writes++;
  return (write as (...a: unknown[]) => boolean).apply(this, args);
} as typeof Socket.prototype.write;

const caller = (i: number): Caller => ({
  identity: { user: `user${i % 100}`, subject: `sub-${i % 100}`, email: undefined, groups: undefined },
  sessionId: 's',
});
const message = (i: number): ClientMessage => ({
  method: 'tools/call',
  id: i,
  params: { name: 'query' },
  tool: 'query',
  prompt: undefined,
  resource: undefined,
  arguments: {},
});

async function measure(name: string, env: Record<string, string>): Promise<void> {
  const config = loadConfig({ OIDC_ISSUER: 'https://auth.example.com/realms/coder', OIDC_ALLOWED_AZP: 'coder', ...env });
  const guard = createLimits(config, createMetrics(), logger);
  if (guard === undefined) {
    console.log(`| ${name} | no guard built: 0 | 0 | 0 |`);
    return;
  }
  await guard.connected();
  let best = Infinity;
  let writesPerCall = 0;
  let judgeWritesPerCall = 0;
  for (let pass = 0; pass < PASSES; pass++) {
    writes = 0;
    let judgeWrites = 0;
    const started = process.hrtime.bigint();
    for (let i = 0; i < CALLS; i++) {
      const m = message(i);
      const c = caller(i);
      const before = writes;
      const decision = await guard.judge(m, c);
      judgeWrites += writes - before;
      if (decision.effect !== 'allow') throw new Error(`refused in the bench: ${JSON.stringify(decision)}`);
      guard.settle(m, c);
    }
    const us = Number(process.hrtime.bigint() - started) / 1000 / CALLS;
    if (us < best) {
      best = us;
      writesPerCall = writes / CALLS;
      judgeWritesPerCall = judgeWrites / CALLS;
    }
  }
  await guard.close();
  console.log(`| ${name} | ${best.toFixed(1)} | ${judgeWritesPerCall.toFixed(2)} | ${writesPerCall.toFixed(2)} |`);
}

const high = '1000000';
console.log(
  '| limits | µs per allowed tools/call (judge + settle) | Redis writes before the call is allowed | Redis writes per call, settle included |',
);
console.log('|---|---:|---:|---:|');
await measure('none configured', {});
await measure('memory: user + tool + in flight', {
  RATE_LIMIT_USER_PER_MINUTE: high,
  RATE_LIMIT_TOOL_PER_MINUTE: high,
  RATE_LIMIT_CONCURRENT_TOOL_CALLS: '100',
});
await measure('Redis: user only', { REDIS_URL: redis.url, RATE_LIMIT_USER_PER_MINUTE: high });
await measure('Redis: user + tool + in flight', {
  REDIS_URL: redis.url,
  RATE_LIMIT_USER_PER_MINUTE: high,
  RATE_LIMIT_TOOL_PER_MINUTE: high,
  RATE_LIMIT_CONCURRENT_TOOL_CALLS: '100',
});
await redis.close();
