// Ends the run with one line naming every system tool whose tests were skipped and how to install
// it. Tests record skips through skipMissing (tools.ts) into a file this reporter creates before
// any worker starts; workers inherit its path in the environment.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Reporter } from 'vitest/node';
import { SKIPS_FILE_VARIABLE } from './tools.js';

export default class SkipReporter implements Reporter {
  private readonly dir = mkdtempSync(join(tmpdir(), 'mcp-test-skips-'));
  private readonly file = join(this.dir, 'skips.jsonl');

  onInit(): void {
    process.env[SKIPS_FILE_VARIABLE] = this.file;
  }

  onTestRunEnd(): void {
    let lines: string[] = [];
    try {
      lines = readFileSync(this.file, 'utf8').split('\n').filter(Boolean);
    } catch {
      // No file: nothing was skipped.
    }
    rmSync(this.dir, { recursive: true, force: true });
    if (lines.length === 0) return;
    const skipped = new Map<string, string>();
    for (const line of lines) {
      const { name, install } = JSON.parse(line) as { name: string; install: string };
      skipped.set(name, install);
    }
    const installs = [...new Set(skipped.values())].join('; ');
    process.stdout.write(
      `\nskipped: tests that need ${[...skipped.keys()].join(', ')} (install: ${installs}; .ci/run installs everything)\n`,
    );
  }
}
