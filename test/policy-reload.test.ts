import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMetrics } from '../src/metrics.js';
import { startPolicy } from '../src/mcp/policy/index.js';
import type { ClientMessage } from '../src/mcp/guard.js';
import { captureLog } from './helpers/log-capture.js';
import { spawnSidecar } from './helpers/sidecar-process.js';

// POLICY_FILE is watched as Kubernetes updates a mounted ConfigMap: the kubelet writes the new
// version into a fresh timestamped directory, points a temporary symlink at it and renames that
// over `..data`; the file itself is a symlink through `..data`.

const ALLOW_QUERY = 'rules:\n  - name: v1-everyone-queries\n    effect: allow\n    when: mcp.tool == "query"\n';
const DENY_QUERY = 'rules:\n  - name: v2-nobody-queries\n    effect: deny\n    when: mcp.tool == "query"\n';
const INVALID = 'rules:\n  - name: v3\n    effect: allow\n    when: mcp.tol == "query"\n';

const call: ClientMessage = { method: 'tools/call', id: 1, params: undefined, tool: 'query', prompt: undefined, resource: undefined, arguments: undefined };
const caller = { identity: { user: 'alice', subject: 'u-alice', email: undefined, groups: [] }, sessionId: undefined };

let version = 0;
/** One ConfigMap update, as the kubelet makes it. */
function publish(dir: string, text: string): void {
  const data = `..2026_12_01_00_00_0${++version}`;
  mkdirSync(join(dir, data));
  writeFileSync(join(dir, data, 'policy.yaml'), text);
  symlinkSync(data, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
}

/** Resolves when `condition` holds, checking as the policy reloads; fails after 5 s. */
async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('policy reload', () => {
  it('swaps in a new version through a ConfigMap ..data symlink swap; an invalid one is logged, counted, and the last good stays', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'policy-configmap-'));
    publish(dir, ALLOW_QUERY);
    symlinkSync('..data/policy.yaml', join(dir, 'policy.yaml'));
    const metrics = createMetrics();
    const log = captureLog();
    const policy = startPolicy({ policyFile: join(dir, 'policy.yaml'), policyMode: 'enforce' }, metrics, log.logger)!;
    const reloads = async (result: string) => (await metrics.policyReloads.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
    try {
      expect(policy.guard.judge(call, caller)).toEqual({ effect: 'allow', rule: 'v1-everyone-queries' });

      publish(dir, DENY_QUERY);
      await until(async () => (await reloads('success')) === 1, 'the reload');
      expect(policy.guard.judge(call, caller)).toMatchObject({ effect: 'deny', rule: 'v2-nobody-queries', rpcCode: -32003 });

      publish(dir, INVALID);
      await until(async () => (await reloads('failure')) === 1, 'the failed reload');
      expect(policy.guard.judge(call, caller)).toMatchObject({ effect: 'deny', rule: 'v2-nobody-queries' });
      const warning = log.lines().find((l) => l.level === 40 || l.level === 'warn');
      expect(String(warning?.msg)).toContain('policy.yaml:4:14: rule "v3": mcp has no field tol');
      expect(await reloads('success')).toBe(1);
    } finally {
      policy.close();
    }
  });

  it('refuses to start with an invalid policy: exit 1, the line and column named', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'policy-start-'));
    writeFileSync(join(dir, 'policy.yaml'), INVALID);
    const sidecar = spawnSidecar({
      OIDC_ISSUER: 'https://auth.example.com/realms/coder', OIDC_ALLOWED_AZP: 'coder', PORT: '0', ADMIN_PORT: '0',
      HOST: '127.0.0.1', ADMIN_HOST: '127.0.0.1', POLICY_FILE: join(dir, 'policy.yaml'),
    });
    expect(await sidecar.exited).toBe(1);
    const fatal = sidecar.lines.find((l) => l.cause === 'POLICY_FILE');
    expect(fatal).toMatchObject({ line: '4', column: '14' });
    expect(String(fatal?.msg)).toContain('policy.yaml:4:14: rule "v3": mcp has no field tol');
  });
});
