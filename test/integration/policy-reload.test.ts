import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/config.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { createLimits, rulesFromConfig } from '../../src/mcp/limits/index.js';
import { createPolicyGuard, readPolicyAtStart } from '../../src/mcp/policy/index.js';
import { watchPolicyFile } from '../../src/mcp/policy-file.js';
import type { ClientMessage } from '../../src/mcp/guard.js';
import { captureLog } from '../helpers/log-capture.js';
import { configMap, until } from '../helpers/configmap.js';
import { spawnSidecar } from '../helpers/sidecar-process.js';
import { testEnv } from '../helpers/sidecar.js';

// POLICY_FILE is watched as Kubernetes updates a mounted ConfigMap (test/helpers/configmap.ts):
// a `..data` symlink swap. Each version goes to the guards built at start, whole or not at all.

const ALLOW_QUERY = 'rules:\n  - name: v1-everyone-queries\n    effect: allow\n    when: mcp.tool == "query"\n';
const DENY_QUERY = 'rules:\n  - name: v2-nobody-queries\n    effect: deny\n    when: mcp.tool == "query"\n';
const INVALID = 'rules:\n  - name: v3\n    effect: allow\n    when: mcp.tol == "query"\n';
const QUERY_ONCE = 'limits:\n  tools:\n    query: { perMinute: 1 }\n';

const call: ClientMessage = {
  method: 'tools/call',
  id: 1,
  params: undefined,
  tool: 'query',
  prompt: undefined,
  resource: undefined,
  arguments: undefined,
};
const caller = { identity: { user: 'alice', subject: 'u-alice', email: undefined, groups: [] }, sessionId: undefined };

/** The guards and the watcher as the app builds them, over a ConfigMap holding `text`. */
function start(text: string, env: Record<string, string> = {}) {
  const map = configMap('policy.yaml', text);
  const config = loadConfig(
    testEnv({ issuer: 'https://auth.example.com/realms/coder' }, { url: 'http://127.0.0.1:9' }, { POLICY_FILE: map.file, ...env }),
  );
  const metrics = createMetrics();
  const log = captureLog();
  const loaded = readPolicyAtStart(config)!;
  const policy = createPolicyGuard(config, metrics, log.logger, loaded);
  const limits = createLimits(config, metrics, log.logger, loaded.document.limits);
  const watched = watchPolicyFile(loaded, { policy, limits, limitsBase: rulesFromConfig(config) }, metrics, log.logger);
  const reloads = async (result: string) => (await metrics.policyReloads.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
  const warning = () => String(log.lines().find((l) => l.level === 40 || l.level === 'warn')?.msg);
  const inForce = async () => (await metrics.policyLastReloadSuccessful.get()).values.find((v) => v.labels.file === map.file)?.value;
  return { ...map, policy, limits, watched, reloads, warning, inForce };
}

describe('policy reload', () => {
  it('swaps in a new version through a ConfigMap ..data symlink swap; an invalid one is logged, counted, and the last good stays', async () => {
    const { publish, policy, watched, reloads, warning, inForce } = start(ALLOW_QUERY);
    try {
      expect(policy!.judge(call, caller)).toEqual({ effect: 'allow', rule: 'v1-everyone-queries' });
      expect(await inForce()).toBe(1);

      publish(DENY_QUERY);
      await until(async () => (await reloads('success')) === 1, 'the reload');
      expect(policy!.judge(call, caller)).toMatchObject({ effect: 'deny', rule: 'v2-nobody-queries', rpcCode: -32003 });

      publish(INVALID);
      await until(async () => (await reloads('failure')) === 1, 'the failed reload');
      expect(policy!.judge(call, caller)).toMatchObject({ effect: 'deny', rule: 'v2-nobody-queries' });
      expect(warning()).toContain('policy.yaml:4:14: rule "v3": mcp has no field tol');
      expect(await reloads('success')).toBe(1);
      // The file as it is now is not what runs: the gauge the alert McpAuthPolicyFileRefused reads.
      expect(await inForce()).toBe(0);

      publish(DENY_QUERY);
      await until(async () => (await reloads('success')) === 2, 'the version fixed');
      expect(await inForce()).toBe(1);
    } finally {
      watched.close();
    }
  });

  it('watches a file of limits only, and refuses a version that gains rules: (the tool policy is set up at start): warned, counted, its limits not applied either', async () => {
    const { publish, policy, limits, watched, reloads, warning } = start(QUERY_ONCE);
    try {
      expect(policy).toBeUndefined();
      expect(await limits!.judge(call, caller)).toEqual({ effect: 'allow' });
      expect(await limits!.judge({ ...call, id: 2 }, caller)).toMatchObject({ effect: 'limit', scope: 'tool' });

      publish('limits:\n  tools:\n    query: { perMinute: 0 }\n');
      await until(async () => (await reloads('success')) === 1, 'the reload of the limits');
      expect(await limits!.judge({ ...call, id: 3 }, caller)).toEqual({ effect: 'allow' });

      publish(`${DENY_QUERY}${QUERY_ONCE}`);
      await until(async () => (await reloads('failure')) === 1, 'the refused version');
      expect(warning()).toContain('rules: added, but the sidecar started without a tool policy: restart to apply it');
      // The limits of the refused version (query once a minute) are not applied: still unlimited.
      expect(await limits!.judge({ ...call, id: 4 }, caller)).toEqual({ effect: 'allow' });
      expect(await limits!.judge({ ...call, id: 5 }, caller)).toEqual({ effect: 'allow' });
    } finally {
      watched.close();
    }
  });

  it('keeps the counts across a reload: a call in flight keeps its slot, a limit that stays keeps its window', async () => {
    const { publish, limits, watched, reloads } = start('limits:\n  userPerMinute: 4\n  concurrentToolCalls: 1\n');
    try {
      const held = { ...call, id: 1 };
      expect(await limits!.judge(held, caller)).toEqual({ effect: 'allow' });
      expect(await limits!.judge({ ...call, id: 2 }, caller)).toMatchObject({ effect: 'limit', scope: 'concurrency' });

      publish('limits:\n  userPerMinute: 4\n  concurrentToolCalls: 2\n');
      await until(async () => (await reloads('success')) === 1, 'the reload');
      // The held call still counts: one more fits under the new limit of 2, not two.
      expect(await limits!.judge({ ...call, id: 3 }, caller)).toEqual({ effect: 'allow' });
      expect(await limits!.judge({ ...call, id: 4 }, caller)).toMatchObject({ effect: 'limit', scope: 'concurrency' });
      // And the user's window goes on: the fifth request of the minute is over 4.
      expect(await limits!.judge({ ...call, id: 5 }, caller)).toMatchObject({ effect: 'limit', scope: 'user' });
    } finally {
      watched.close();
    }
  });

  it('refuses a version that loses rules: (it would take a restart to run without a policy): the last good policy stays', async () => {
    const { publish, policy, watched, reloads, warning } = start(`${DENY_QUERY}${QUERY_ONCE}`);
    try {
      publish('limits:\n  tools:\n    query: { perMinute: 5 }\n');
      await until(async () => (await reloads('failure')) === 1, 'the refused version');
      expect(warning()).toContain('rules: removed: restart to run without a tool policy');
      expect(policy!.judge(call, caller)).toMatchObject({ effect: 'deny', rule: 'v2-nobody-queries' });
    } finally {
      watched.close();
    }
  });

  it('refuses a version that sets limits when the sidecar started without any; limits of the variables count as set', async () => {
    const bare = start(ALLOW_QUERY);
    const withVariable = start(ALLOW_QUERY, { RATE_LIMIT_USER_PER_MINUTE: '100' });
    try {
      expect(bare.limits).toBeUndefined();
      bare.publish(`${ALLOW_QUERY}${QUERY_ONCE}`);
      await until(async () => (await bare.reloads('failure')) === 1, 'the refused version');
      expect(bare.warning()).toContain('limits set, but the sidecar started without any: restart to apply them');

      // RATE_LIMIT_USER_PER_MINUTE made a limits guard: the file's limits join it on reload.
      withVariable.publish(`${ALLOW_QUERY}${QUERY_ONCE}`);
      await until(async () => (await withVariable.reloads('success')) === 1, 'the reload');
      expect(await withVariable.limits!.judge(call, caller)).toEqual({ effect: 'allow' });
      expect(await withVariable.limits!.judge({ ...call, id: 2 }, caller)).toMatchObject({ effect: 'limit', scope: 'tool' });
    } finally {
      bare.watched.close();
      withVariable.watched.close();
    }
  });

  it('refuses to start with an invalid policy: exit 1, the line and column named', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'policy-start-'));
    writeFileSync(join(dir, 'policy.yaml'), INVALID);
    const sidecar = spawnSidecar({
      OIDC_ISSUER: 'https://auth.example.com/realms/coder',
      OIDC_ALLOWED_AZP: 'coder',
      PORT: '0',
      ADMIN_PORT: '0',
      HOST: '127.0.0.1',
      ADMIN_HOST: '127.0.0.1',
      POLICY_FILE: join(dir, 'policy.yaml'),
    });
    expect(await sidecar.exited).toBe(1);
    const fatal = sidecar.lines.find((l) => l.cause === 'POLICY_FILE');
    expect(fatal).toMatchObject({ line: '4', column: '14' });
    expect(String(fatal?.msg)).toContain('policy.yaml:4:14: rule "v3": mcp has no field tol');
  });
});
