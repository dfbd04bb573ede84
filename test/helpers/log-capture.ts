// A logger whose lines a test can read: the sidecar's own logger, writing into memory.

import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { createLogger } from '../../src/observability/log.js';
import { arrivals } from './arrivals.js';

export interface CapturedLog {
  readonly logger: Logger;
  readonly text: () => string;
  readonly lines: () => Record<string, unknown>[];
  /** The audit lines ("msg":"mcp"). */
  readonly audit: () => Record<string, unknown>[];
  /** Resolves once `count` audit lines matching `where` have been written (bounded by the test timeout). */
  readonly waitForAudit: (where: (line: Record<string, unknown>) => boolean, count?: number) => Promise<Record<string, unknown>[]>;
}

export function captureLog(level = 'info'): CapturedLog {
  const chunks: string[] = [];
  const audits = arrivals(() => audit());
  const logger = createLogger(
    level,
    new Writable({
      write(chunk, _encoding, done) {
        chunks.push(String(chunk));
        audits.wake();
        done();
      },
    }),
  );
  const text = () => chunks.join('');
  const lines = () =>
    text()
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const audit = () => lines().filter((line) => line.msg === 'mcp');
  return {
    logger,
    text,
    lines,
    audit,
    waitForAudit: (where, count) => audits.waitFor(where, count),
  };
}
