import { describe, expect, it } from 'vitest';
import { linkSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { configMap, until } from '../helpers/configmap.js';
import { ALICE, QUERY_CALL, watchedGuards } from '../helpers/policy-file.js';

// Why the tool-policy component and the Helm chart mount the policy ConfigMap as a directory and
// never with subPath. The kubelet updates a ConfigMap volume by writing a new timestamped
// directory and swapping the `..data` symlink (test/helpers/configmap.ts); a subPath mount is a
// bind mount of the file as it resolved when the container started, so it keeps showing that
// file: the sidecar never reloads, and no metric or alert can tell, since nothing failed.

const V1 = 'rules:\n  - name: v1-everyone-queries\n    effect: allow\n    when: mcp.tool == "query"\n';
const V2 = 'rules:\n  - name: v2-nobody-queries\n    effect: deny\n    when: mcp.tool == "query"\n';

describe('the policy ConfigMap as the sidecar sees it', () => {
  it('mounted as a directory, an update reloads; through subPath, the same update never arrives and nothing reports it', async () => {
    const map = configMap('policy.yaml', V1);
    // subPath: the file the volume's policy.yaml resolved to at container start, bind-mounted elsewhere.
    const subPathFile = join(mkdtempSync(join(tmpdir(), 'subpath-')), 'policy.yaml');
    linkSync(realpathSync(map.file), subPathFile);
    const directory = watchedGuards(map.file);
    const subPath = watchedGuards(subPathFile);
    try {
      map.publish(V2);
      await until(async () => (await directory.reloads('success')) === 1, 'the directory mount to reload');
      expect(directory.policy!.judge(QUERY_CALL, ALICE)).toMatchObject({ effect: 'deny', rule: 'v2-nobody-queries' });

      expect(readFileSync(subPathFile, 'utf8')).toBe(V1);
      expect(subPath.policy!.judge(QUERY_CALL, ALICE)).toEqual({ effect: 'allow', rule: 'v1-everyone-queries' });
      expect(await subPath.reloads('success')).toBe(0);
      // In force as far as the sidecar knows: McpAuthPolicyFileRefused stays silent.
      expect(await subPath.inForce()).toBe(1);
    } finally {
      directory.watched.close();
      subPath.watched.close();
      for (const dir of [dirname(map.file), dirname(subPathFile)]) rmSync(dir, { recursive: true, force: true });
    }
  });
});
