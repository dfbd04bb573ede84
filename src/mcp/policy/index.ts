// The tool policy of a running sidecar: POLICY_FILE loaded at start (invalid: the start fails,
// naming line and column), a PolicyGuard judging with it, and the file watched. A Kubernetes
// ConfigMap update swaps a `..data` symlink in the file's directory, so the directory is
// watched and the file re-read on any change there, debounced; a valid new version replaces
// the old at once, an invalid one is logged and counted and the last good policy stays.

import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import { StartupError } from '../../errors.js';
import type { Metrics } from '../../metrics.js';
import { PolicyError, parsePolicy, type PolicyDocument } from './file.js';
import { PolicyGuard } from './guard.js';

/** Changes in the directory within this time are read once (a ConfigMap swap is several renames). */
const RELOAD_DEBOUNCE_MS = 100;

export interface RunningPolicy {
  readonly guard: PolicyGuard;
  /** Resolves when the file has been re-read after the latest change (tests wait on it). */
  readonly settled: () => Promise<void>;
  close(): void;
}

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
    throw new StartupError('POLICY_FILE', file, `invalid policy: ${error.message}`, { cause: error, fields: { line: String(first.line), column: String(first.column) } });
  }
}

/** Undefined when POLICY_FILE is not set, or the file has no rules: (no tool policy: no guard, no cost). */
export function startPolicy(
  config: Pick<Config, 'policyFile' | 'policyMode'>,
  metrics: Pick<Metrics, 'policyDecisions' | 'policyReloads'>,
  logger: Logger,
  loaded: PolicyAtStart | undefined = readPolicyAtStart(config),
): RunningPolicy | undefined {
  if (loaded === undefined) return undefined;
  const { file, document } = loaded;
  let { text } = loaded;
  if (document.rules === undefined) {
    logger.info({ policyFile: file }, 'policy file has no rules: no tool policy');
    return undefined;
  }
  const log = logger.child({ policyFile: file });
  const guard = new PolicyGuard(document.rules, {
    mode: config.policyMode,
    decisions: metrics.policyDecisions,
    onWouldDeny: (message, caller, judgement) => log.info({
      user: caller.identity.user, method: message.method, tool: message.tool, prompt: message.prompt, resource: message.resource,
      policyRule: judgement.rule, reason: judgement.reason,
    }, 'policy would deny (POLICY_MODE=audit)'),
  });
  log.info({ rules: document.rules.length, mode: config.policyMode }, 'tool policy loaded');

  let timer: NodeJS.Timeout | undefined;
  let reading: Promise<void> = Promise.resolve();
  const reload = async () => {
    let next: string;
    try {
      next = await readFile(file, 'utf8');
    } catch (error) {
      // Mid-swap the file can be missing for a moment; the next event reads it again.
      metrics.policyReloads.inc({ result: 'failure' });
      log.warn({ err: (error as Error).message }, 'policy file unreadable: the last good policy stays');
      return;
    }
    if (next === text) return;
    try {
      const rules = parsePolicy(next, file).rules ?? [];
      guard.replace(rules);
      text = next;
      metrics.policyReloads.inc({ result: 'success' });
      log.info({ rules: rules.length }, 'tool policy reloaded');
    } catch (error) {
      if (!(error instanceof PolicyError)) throw error;
      text = next; // the same bad text is not reported again on every event
      metrics.policyReloads.inc({ result: 'failure' });
      log.warn({ problems: error.problems }, `invalid policy, the last good policy stays: ${error.message}`);
    }
  };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(file), { persistent: false }, () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timer = undefined;
        reading = reading.then(reload);
      }, RELOAD_DEBOUNCE_MS);
      timer.unref();
    });
    watcher.on('error', (error) => log.warn({ err: error.message }, 'policy file watch failed: changes are no longer picked up'));
  } catch (error) {
    log.warn({ err: (error as Error).message }, 'cannot watch the policy file: changes need a restart');
  }
  return {
    guard,
    settled: async () => {
      while (timer !== undefined) await new Promise((resolve) => setTimeout(resolve, RELOAD_DEBOUNCE_MS));
      await reading;
    },
    close() {
      clearTimeout(timer);
      watcher?.close();
    },
  };
}
