// pino on stdout. Request log lines are built field by field (see app.ts), never from whole
// header objects; the redaction paths are a second fence, fixed here at start-up.

import { pino, type Logger, type DestinationStream } from 'pino';

export const REDACTED_PATHS = [
  'authorization', 'cookie', 'token',
  '*.authorization', '*.cookie', '*.token', '*.headers.authorization', '*.headers.cookie',
  'req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, base: { service: 'mcp-auth-sidecar' }, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, destination);
}
