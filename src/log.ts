// pino on stdout. Request log lines are built field by field (see app.ts), never from whole
// header objects; the redaction paths are a second fence, fixed here at start-up.

import { pino, type Logger, type DestinationStream } from 'pino';

// No wildcards: they would be evaluated on every line, and no line is built from a header object.
export const REDACTED_PATHS = [
  'authorization', 'cookie', 'token',
  'headers.authorization', 'headers.cookie', 'req.headers.authorization', 'req.headers.cookie',
];

const FLUSH_INTERVAL_MS = 250;

/**
 * Logs go to stdout through a 4 KiB buffer, flushed at least every 250 ms and on shutdown
 * (`logger.flush()`): one write per request line was the largest cost of a request.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  let stream = destination;
  if (stream === undefined) {
    const stdout = pino.destination({ dest: 1, minLength: 4096, sync: false });
    setInterval(() => stdout.flush(), FLUSH_INTERVAL_MS).unref();
    stream = stdout;
  }
  return pino({ level, base: { service: 'mcp-auth-sidecar' }, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, stream);
}
