// POLICY_FILE watched. A Kubernetes ConfigMap update swaps a `..data` symlink in the file's
// directory, so the directory is watched and the file re-read on any change there, debounced.
// A version is applied whole or not at all: its rules go to the tool policy and its limits
// (over the RATE_LIMIT_* variables, as at start) to the rate limits; if either is invalid, it is
// logged and counted and the last good version of both stays. The guards are fixed at start,
// so a version that would need one added or removed (rules: gained or lost, limits where there
// were none) is refused the same way, its warning saying that a restart applies it.
// mcp_auth_policy_last_reload_successful{file} says whether the file as it is now is in force.

import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { watchMountedFiles } from '../lib/mounted-files.js';
import type { Metrics } from '../observability/metrics.js';
import type { LimitsGuard } from './limits/index.js';
import { LimitsFileError, anyLimit, withLimitsSection, type LimitRules } from './limits/rules.js';
import { PolicyError, parsePolicy } from './policy/file.js';
import type { PolicyGuard } from './policy/guard.js';
import type { PolicyAtStart } from './policy/index.js';

/** Changes in the directory within this time are read once (a ConfigMap swap is several renames). */
const RELOAD_DEBOUNCE_MS = 100;

/** What a new version goes to: the guards built at start (undefined: none was). */
export interface PolicyFileGuards {
  readonly policy: PolicyGuard | undefined;
  readonly limits: LimitsGuard | undefined;
  /** The RATE_LIMIT_* variables' limits, which the file's `limits:` overrides key by key. */
  readonly limitsBase: LimitRules;
}

export interface WatchedPolicyFile {
  /** Resolves when the file has been re-read after the latest change (tests wait on it). */
  settled(): Promise<void>;
  close(): void;
}

/** A valid version that needs a guard the sidecar did not start with, or has one too many. */
class NeedsRestart extends Error {}

/** Checks every part of the version before changing anything, so both guards move together. */
function apply(text: string, file: string, guards: PolicyFileGuards): { rules: number | undefined; limits: LimitRules } {
  const { rules, limits: section } = parsePolicy(text, file);
  const limits = withLimitsSection(guards.limitsBase, section);
  if (rules !== undefined && guards.policy === undefined)
    throw new NeedsRestart('rules: added, but the sidecar started without a tool policy: restart to apply it');
  if (rules === undefined && guards.policy !== undefined) throw new NeedsRestart('rules: removed: restart to run without a tool policy');
  if (guards.limits === undefined && anyLimit(limits))
    throw new NeedsRestart('limits set, but the sidecar started without any: restart to apply them');
  if (rules !== undefined) guards.policy?.replace(rules);
  guards.limits?.replace(limits);
  return { rules: rules?.length, limits };
}

export function watchPolicyFile(
  loaded: PolicyAtStart,
  guards: PolicyFileGuards,
  metrics: Pick<Metrics, 'policyReloads' | 'policyLastReloadSuccessful'>,
  logger: Logger,
): WatchedPolicyFile {
  const { file } = loaded;
  let { text } = loaded;
  const log = logger.child({ policyFile: file });
  // Whether `text` (the version last read) is in force; a failed read says 0 until the next one.
  let textApplied = true;
  const inForce = (yes: boolean) => metrics.policyLastReloadSuccessful.set({ file }, yes ? 1 : 0);
  inForce(true);
  const reload = async () => {
    let next: string;
    try {
      next = await readFile(file, 'utf8');
    } catch (error) {
      // Mid-swap the file can be missing for a moment; the next event reads it again.
      metrics.policyReloads.inc({ result: 'failure' });
      inForce(false);
      log.warn({ err: (error as Error).message }, 'policy file unreadable: the last good version stays');
      return;
    }
    if (next === text) {
      inForce(textApplied);
      return;
    }
    text = next; // a bad text is not reported again on every event
    try {
      const { rules, limits } = apply(next, file, guards);
      textApplied = true;
      metrics.policyReloads.inc({ result: 'success' });
      log.info({ rules, limits: guards.limits && { ...limits, tools: Object.fromEntries(limits.tools) } }, 'policy file reloaded');
    } catch (error) {
      textApplied = false;
      metrics.policyReloads.inc({ result: 'failure' });
      if (error instanceof PolicyError || error instanceof LimitsFileError || error instanceof NeedsRestart) {
        const problems = error instanceof NeedsRestart ? undefined : error.problems;
        log.warn(
          { problems },
          `policy file ${error instanceof NeedsRestart ? 'not applied' : 'invalid'}, the last good version stays: ${error.message}`,
        );
      } else {
        // A bug of ours, not the file's: the sidecar goes on with the last good version, and
        // later versions are still read (a rejected promise here would stop the reloads).
        log.error({ err: error }, 'policy file reload failed: the last good version stays');
      }
    }
    inForce(textApplied);
  };
  return watchMountedFiles([file], reload, {
    settleMs: RELOAD_DEBOUNCE_MS,
    onWatchError: (directory, error) =>
      log.warn({ directory, err: error.message }, "cannot watch the policy file's directory: changes need a restart"),
  });
}
