import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configMap, until } from '../helpers/configmap.js';
import { ALICE, QUERY_CALL, watchedGuards } from '../helpers/policy-file.js';
import { spawnSidecar } from '../helpers/sidecar-process.js';

// POLICY_FILE is watched as Kubernetes updates a mounted ConfigMap (test/helpers/configmap.ts):
// a `..data` symlink swap. Each version goes to the guards built at start, whole or not at all.

const ALLOW_QUERY = 'rules:\n  - name: v1-everyone-queries\n    effect: allow\n    when: mcp.tool == "query"\n';
const DENY_QUERY = 'rules:\n  - name: v2-nobody-queries\n    effect: deny\n    when: mcp.tool == "query"\n';
const INVALID = 'rules:\n  - name: v3\n    effect: allow\n    when: mcp.tol == "query"\n';
const QUERY_ONCE = 'limits:\n  tools:\n    query: { perMinute: 1 }\n';

/** The guards and the watcher as the app builds them, over a ConfigMap holding `text`. */
function start(text: string, env: Record<string, string> = {}) {
  const map = configMap('policy.yaml', text);
  return { ...map, ...watchedGuards(map.file, env) };
}

describe('policy reload', () => {
  it('swaps in a new version through a ConfigMap ..data symlink swap; an invalid one is logged, counted, and the last good stays', async () => {
    const { publish, policy, watched, reloads, warning, inForce } = start(ALLOW_QUERY);
    try {
      expect(policy!.judge(QUERY_CALL, ALICE)).toEqual({ effect: 'allow', rule: 'v1-everyone-queries' });
      expect(await inForce()).toBe(1);

      publish(DENY_QUERY);
      await until(async () => (await reloads('success')) === 1, 'the reload');
      expect(policy!.judge(QUERY_CALL, ALICE)).toMatchObject({ effect: 'deny', rule: 'v2-nobody-queries', rpcCode: -32003 });

      publish(INVALID);
      await until(async () => (await reloads('failure')) === 1, 'the failed reload');
      expect(policy!.judge(QUERY_CALL, ALICE)).toMatchObject({ effect: 'deny', rule: 'v2-nobody-queries' });
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
      expect(await limits!.judge(QUERY_CALL, ALICE)).toEqual({ effect: 'allow' });
      expect(await limits!.judge({ ...QUERY_CALL, id: 2 }, ALICE)).toMatchObject({ effect: 'limit', scope: 'tool' });

      publish('limits:\n  tools:\n    query: { perMinute: 0 }\n');
      await until(async () => (await reloads('success')) === 1, 'the reload of the limits');
      expect(await limits!.judge({ ...QUERY_CALL, id: 3 }, ALICE)).toEqual({ effect: 'allow' });

      publish(`${DENY_QUERY}${QUERY_ONCE}`);
      await until(async () => (await reloads('failure')) === 1, 'the refused version');
      expect(warning()).toContain('rules: added, but the sidecar started without a tool policy: restart to apply it');
      // The limits of the refused version (query once a minute) are not applied: still unlimited.
      expect(await limits!.judge({ ...QUERY_CALL, id: 4 }, ALICE)).toEqual({ effect: 'allow' });
      expect(await limits!.judge({ ...QUERY_CALL, id: 5 }, ALICE)).toEqual({ effect: 'allow' });
    } finally {
      watched.close();
    }
  });

  it('keeps the counts across a reload: a call in flight keeps its slot, a limit that stays keeps its window', async () => {
    const { publish, limits, watched, reloads } = start('limits:\n  userPerMinute: 4\n  concurrentToolCalls: 1\n');
    try {
      const held = { ...QUERY_CALL, id: 1 };
      expect(await limits!.judge(held, ALICE)).toEqual({ effect: 'allow' });
      expect(await limits!.judge({ ...QUERY_CALL, id: 2 }, ALICE)).toMatchObject({ effect: 'limit', scope: 'concurrency' });

      publish('limits:\n  userPerMinute: 4\n  concurrentToolCalls: 2\n');
      await until(async () => (await reloads('success')) === 1, 'the reload');
      // The held call still counts: one more fits under the new limit of 2, not two.
      expect(await limits!.judge({ ...QUERY_CALL, id: 3 }, ALICE)).toEqual({ effect: 'allow' });
      expect(await limits!.judge({ ...QUERY_CALL, id: 4 }, ALICE)).toMatchObject({ effect: 'limit', scope: 'concurrency' });
      // And the user's window goes on: the fifth request of the minute is over 4.
      expect(await limits!.judge({ ...QUERY_CALL, id: 5 }, ALICE)).toMatchObject({ effect: 'limit', scope: 'user' });
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
      expect(policy!.judge(QUERY_CALL, ALICE)).toMatchObject({ effect: 'deny', rule: 'v2-nobody-queries' });
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
      expect(await withVariable.limits!.judge(QUERY_CALL, ALICE)).toEqual({ effect: 'allow' });
      expect(await withVariable.limits!.judge({ ...QUERY_CALL, id: 2 }, ALICE)).toMatchObject({ effect: 'limit', scope: 'tool' });
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
