import { describe, expect, it } from 'vitest';
import { linkSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadConfig } from '../../src/config/config.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { createPolicyGuard, readPolicyAtStart } from '../../src/mcp/policy/index.js';
import { watchPolicyFile } from '../../src/mcp/policy-file.js';
import { rulesFromConfig } from '../../src/mcp/limits/index.js';
import type { ClientMessage } from '../../src/mcp/guard.js';
import { captureLog } from '../helpers/log-capture.js';
import { configMap, until } from '../helpers/configmap.js';
import { testEnv } from '../helpers/sidecar.js';

// Why the tool-policy component and the Helm chart mount the policy ConfigMap as a directory and
// never with subPath. The kubelet updates a ConfigMap volume by writing a new timestamped
// directory and swapping the `..data` symlink (test/helpers/configmap.ts); a subPath mount is a
// bind mount of the file as it resolved when the container started, so it keeps showing that
// file: the sidecar never reloads, and no metric or alert can tell, since nothing failed.

const V1 = 'rules:\n  - name: v1-everyone-queries\n    effect: allow\n    when: mcp.tool == "query"\n';
const V2 = 'rules:\n  - name: v2-nobody-queries\n    effect: deny\n    when: mcp.tool == "query"\n';

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

/** The policy guard and watcher as the app builds them for POLICY_FILE=`file`. */
function start(file: string) {
  const config = loadConfig(
    testEnv({ issuer: 'https://auth.example.com/realms/coder' }, { url: 'http://127.0.0.1:9' }, { POLICY_FILE: file }),
  );
  const metrics = createMetrics();
  const loaded = readPolicyAtStart(config)!;
  const policy = createPolicyGuard(config, metrics, captureLog().logger, loaded)!;
  const watched = watchPolicyFile(loaded, { policy, limits: undefined, limitsBase: rulesFromConfig(config) }, metrics, captureLog().logger);
  const reloads = async () => (await metrics.policyReloads.get()).values.find((v) => v.labels.result === 'success')?.value ?? 0;
  const inForce = async () => (await metrics.policyLastReloadSuccessful.get()).values.find((v) => v.labels.file === file)?.value;
  return { policy, watched, reloads, inForce };
}

describe('the policy ConfigMap as the sidecar sees it', () => {
  it('mounted as a directory, an update reloads; through subPath, the same update never arrives and nothing reports it', async () => {
    const map = configMap('policy.yaml', V1);
    // subPath: the file the volume's policy.yaml resolved to at container start, bind-mounted elsewhere.
    const subPathFile = join(mkdtempSync(join(tmpdir(), 'subpath-')), 'policy.yaml');
    linkSync(realpathSync(map.file), subPathFile);
    const directory = start(map.file);
    const subPath = start(subPathFile);
    try {
      map.publish(V2);
      await until(async () => (await directory.reloads()) === 1, 'the directory mount to reload');
      expect(directory.policy.judge(call, caller)).toMatchObject({ effect: 'deny', rule: 'v2-nobody-queries' });

      expect(readFileSync(subPathFile, 'utf8')).toBe(V1);
      expect(subPath.policy.judge(call, caller)).toEqual({ effect: 'allow', rule: 'v1-everyone-queries' });
      expect(await subPath.reloads()).toBe(0);
      // In force as far as the sidecar knows: McpAuthPolicyFileRefused stays silent.
      expect(await subPath.inForce()).toBe(1);
    } finally {
      directory.watched.close();
      subPath.watched.close();
      for (const dir of [dirname(map.file), dirname(subPathFile)]) rmSync(dir, { recursive: true, force: true });
    }
  });
});
