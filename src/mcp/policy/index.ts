// The tool policy of a running sidecar: POLICY_FILE read and checked at start (invalid: the
// start fails, naming line and column), and the PolicyGuard judging with its rules. The file is
// watched by mcp/policy-file.ts, which hands each valid new version to this guard and to the rate limits.

import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Config } from '../../config/config.js';
import { StartupError } from '../../lib/errors.js';
import type { Metrics } from '../../observability/metrics.js';
import { PolicyError, parsePolicy, type PolicyDocument } from './file.js';
import { PolicyGuard } from './guard.js';

function readAtStart(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new StartupError('POLICY_FILE', file, `cannot read the policy file: ${(error as Error).message}`, { cause: error });
  }
}

export interface PolicyAtStart {
  readonly file: string;
  readonly text: string;
  readonly document: PolicyDocument;
}

/** POLICY_FILE read and checked at start (undefined when not set); its `limits:` go to the rate limits. */
export function readPolicyAtStart(config: Pick<Config, 'policyFile'>): PolicyAtStart | undefined {
  const file = config.policyFile;
  if (file === undefined) return undefined;
  const text = readAtStart(file);
  try {
    return { file, text, document: parsePolicy(text, file) };
  } catch (error) {
    if (!(error instanceof PolicyError)) throw error;
    const first = error.problems[0]!;
    throw new StartupError('POLICY_FILE', file, `invalid policy: ${error.message}`, {
      cause: error,
      fields: { line: String(first.line), column: String(first.column) },
    });
  }
}

/** Undefined when POLICY_FILE is not set, or the file has no rules: (no tool policy: no guard, no cost). */
export function createPolicyGuard(
  config: Pick<Config, 'policyMode'>,
  metrics: Pick<Metrics, 'policyDecisions'>,
  logger: Logger,
  loaded: PolicyAtStart | undefined,
): PolicyGuard | undefined {
  if (loaded === undefined) return undefined;
  const { file, document } = loaded;
  if (document.rules === undefined) {
    logger.info({ policyFile: file }, 'policy file has no rules: no tool policy');
    return undefined;
  }
  const log = logger.child({ policyFile: file });
  log.info({ rules: document.rules.length, mode: config.policyMode }, 'tool policy loaded');
  return new PolicyGuard(document.rules, {
    mode: config.policyMode,
    decisions: metrics.policyDecisions,
    onWouldDeny: (message, caller, judgement) =>
      log.info(
        {
          user: caller.identity.user,
          method: message.method,
          tool: message.tool,
          prompt: message.prompt,
          resource: message.resource,
          policyRule: judgement.rule,
          reason: judgement.reason,
        },
        'policy would deny (POLICY_MODE=audit)',
      ),
  });
}
