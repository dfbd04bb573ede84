// pino on stdout. Request log lines are built field by field (see app.ts), never from whole
// header objects; the redaction paths are a second fence, fixed here at start-up.

import { pino, type Bindings, type ChildLoggerOptions, type Logger, type DestinationStream } from 'pino';

// No wildcards: they would be evaluated on every line, and no line is built from a header object.
export const REDACTED_PATHS = [
  'authorization', 'cookie', 'token',
  'headers.authorization', 'headers.cookie', 'req.headers.authorization', 'req.headers.cookie',
];

const BATCH_BYTES = 16 * 1024;
const FLUSH_INTERVAL_MS = 250;
const MAX_PENDING_BYTES = 8 * 1024 * 1024;

interface Output {
  write(data: string, done?: () => void): boolean;
  readonly writableLength: number;
}

/**
 * Lines gathered and written to stdout 16 KiB at a time, at least every 250 ms and on
 * `logger.flush()`. Writing each line on its own, or through sonic-boom, cost 1.6 to 6 µs a
 * request more (bench/RESULTS.md). A pipe that does not keep up (8 MiB waiting) makes us drop
 * lines rather than grow without bound or block requests; the count is logged once it drains.
 */
export class BufferedOutput implements DestinationStream {
  private lines: string[] = [];
  private bytes = 0;
  private dropped = 0;

  constructor(private readonly output: Output = process.stdout) {
    setInterval(() => this.flush(), FLUSH_INTERVAL_MS).unref();
  }

  write(line: string): void {
    this.lines.push(line);
    this.bytes += line.length;
    if (this.bytes >= BATCH_BYTES) this.flush();
  }

  flush(done?: () => void): void {
    const lines = this.lines;
    this.lines = [];
    this.bytes = 0;
    if (this.output.writableLength > MAX_PENDING_BYTES) {
      this.dropped += lines.length;
      done?.();
      return;
    }
    let data = lines.join('');
    if (this.dropped > 0) {
      data = `${JSON.stringify({ level: 40, time: Date.now(), service: 'mcp-auth-sidecar', dropped: this.dropped, msg: 'log lines dropped: stdout did not keep up' })}\n${data}`;
      this.dropped = 0;
    }
    if (data === '') done?.();
    else this.output.write(data, done);
  }
}

export function createLogger(level: string, destination: DestinationStream = new BufferedOutput()): Logger {
  return pino({ level, base: { service: 'mcp-auth-sidecar' }, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, destination);
}

type LogMethod = (...args: unknown[]) => void;

/**
 * The per-request logger Fastify asks for (`childLoggerFactory`), made on first use. Fastify
 * would build a pino child for every request, and pino serializes its bindings at once
 * (0.5 µs); most requests never log through it: their one line, the request line, goes through
 * the root logger with the request id as its first field, which is the same JSON.
 */
export class LazyChildLogger {
  private made: Logger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly bindings: Bindings,
    private readonly options: object,
  ) {}

  private get logger(): Logger {
    return (this.made ??= this.parent.child(this.bindings, this.options as ChildLoggerOptions));
  }

  get level(): string { return this.logger.level; }
  set level(level: string) { this.logger.level = level; }
  child(bindings: Bindings, options?: ChildLoggerOptions): Logger { return this.logger.child(bindings, options); }
  fatal(...args: unknown[]): void { (this.logger.fatal as LogMethod)(...args); }
  error(...args: unknown[]): void { (this.logger.error as LogMethod)(...args); }
  warn(...args: unknown[]): void { (this.logger.warn as LogMethod)(...args); }
  info(...args: unknown[]): void { (this.logger.info as LogMethod)(...args); }
  debug(...args: unknown[]): void { (this.logger.debug as LogMethod)(...args); }
  trace(...args: unknown[]): void { (this.logger.trace as LogMethod)(...args); }
  silent(): void {}
}
