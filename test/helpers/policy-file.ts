// The tool policy and limits guards with their POLICY_FILE watcher, built as the app builds them,
// without the rest of the app: what the policy reload and ConfigMap mount tests look at.

import { loadConfig } from '../../src/config/config.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { createLimits, rulesFromConfig } from '../../src/mcp/limits/index.js';
import { createPolicyGuard, readPolicyAtStart } from '../../src/mcp/policy/index.js';
import { watchPolicyFile } from '../../src/mcp/policy-file.js';
import type { ClientMessage } from '../../src/mcp/guard.js';
import { captureLog } from './log-capture.js';
import { testEnv } from './sidecar.js';

/** alice's tools/call of `query`, as the reading hands it to the guards. */
export const QUERY_CALL: ClientMessage = {
  method: 'tools/call',
  id: 1,
  params: undefined,
  tool: 'query',
  prompt: undefined,
  resource: undefined,
  arguments: undefined,
};
export const ALICE = { identity: { user: 'alice', subject: 'u-alice', email: undefined, groups: [] }, sessionId: undefined };

/** The guards and the watcher for POLICY_FILE=`file` (and `env`), their metrics and warnings. */
export function watchedGuards(file: string, env: Record<string, string> = {}) {
  const config = loadConfig(
    testEnv({ issuer: 'https://auth.example.com/realms/coder' }, { url: 'http://127.0.0.1:9' }, { POLICY_FILE: file, ...env }),
  );
  const metrics = createMetrics();
  const log = captureLog();
  const loaded = readPolicyAtStart(config)!;
  const policy = createPolicyGuard(config, metrics, log.logger, loaded);
  const limits = createLimits(config, metrics, log.logger, loaded.document.limits);
  const watched = watchPolicyFile(loaded, { policy, limits, limitsBase: rulesFromConfig(config) }, metrics, log.logger);
  const reloads = async (result: string) => (await metrics.policyReloads.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
  const warning = () => String(log.lines().find((l) => l.level === 40 || l.level === 'warn')?.msg);
  const inForce = async () => (await metrics.policyLastReloadSuccessful.get()).values.find((v) => v.labels.file === file)?.value;
  return { policy, limits, watched, reloads, warning, inForce };
}
