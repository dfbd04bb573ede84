// pino on stdout. Request log lines are built field by field (createRequestLogger, below),
// never from whole header objects; the redaction paths are a second fence, fixed here at start-up.

import { pino, symbols, type Bindings, type ChildLoggerOptions, type Logger, type DestinationStream } from 'pino';

// No wildcards: they would be evaluated on every line, and no line is built from a header object.
export const REDACTED_PATHS = [
  'authorization',
  'cookie',
  'token',
  'headers.authorization',
  'headers.cookie',
  'req.headers.authorization',
  'req.headers.cookie',
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

/** The one line every request logs when it ends (its fields are documented). */
export interface RequestLine {
  reqId: string;
  /** The client's X-Request-Id, bounded; reqId is always the sidecar's own. */
  clientRequestId?: string | undefined;
  method: string;
  path: string;
  status: number;
  durationMs: number;
  decision: string;
  reason: string | undefined;
  user: string | undefined;
  subject: string | undefined;
  aborted: boolean;
  /** The request's span, when tracing recorded one. */
  traceId?: string | undefined;
  spanId?: string | undefined;
}

/**
 * Writes request lines into a logger's own destination, with its bindings and clock, as one
 * template rather than through pino's serializer for any object: 0.26 against 0.85 µs a line
 * in a loop, about half a microsecond a request in the sidecar (bench/RESULTS.md, `bench:ab`).
 * The JSON is what `logger.info(line, 'request')` writes, fields left out when undefined or
 * false (test/integration/logs.test.ts compares the two). Its fields are fixed and none is a header
 * object, so pino's redaction has nothing to do here.
 */
export function createRequestLogger(logger: Logger): (line: RequestLine) => void {
  const info = createInfoLine(logger, 'request');
  const text = JSON.stringify;
  return function logRequest(line: RequestLine): void {
    if (!logger.isLevelEnabled('info')) return;
    let json =
      `${info.start()},"reqId":${text(line.reqId)}` +
      (line.clientRequestId === undefined ? '' : `,"clientRequestId":${text(line.clientRequestId)}`) +
      `,"method":${text(line.method)},"path":${text(line.path)}` +
      `,"status":${line.status},"durationMs":${line.durationMs},"decision":${text(line.decision)}`;
    if (line.reason !== undefined) json += `,"reason":${text(line.reason)}`;
    if (line.user !== undefined) json += `,"user":${text(line.user)}`;
    if (line.subject !== undefined) json += `,"subject":${text(line.subject)}`;
    if (line.aborted) json += ',"aborted":true';
    if (line.traceId !== undefined) json += `,"traceId":"${line.traceId}","spanId":"${line.spanId}"`;
    info.end(json);
  };
}

/**
 * An info line written straight into a logger's destination, with its bindings and clock: the
 * same JSON as `logger.info(fields, msg)` for lines whose fields are fixed (the request line and
 * the audit line), built as one template. pino exports the symbols read here for this: "for
 * performant integration where necessary".
 */
export function createInfoLine(logger: Logger, msg: string): { start(): string; end(json: string): void } {
  const internals = logger as unknown as Record<symbol, unknown>;
  const destination = internals[symbols.streamSym] as DestinationStream;
  const bindings = internals[symbols.chindingsSym] as string;
  const time = internals[symbols.timeSym] as () => string;
  const close = `,"msg":${JSON.stringify(msg)}}\n`;
  return {
    start: () => `{"level":30${time()}${bindings}`,
    end: (json) => destination.write(json + close),
  };
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

  get level(): string {
    return this.logger.level;
  }
  set level(level: string) {
    this.logger.level = level;
  }
  child(bindings: Bindings, options?: ChildLoggerOptions): Logger {
    return this.logger.child(bindings, options);
  }
  fatal(...args: unknown[]): void {
    (this.logger.fatal as LogMethod)(...args);
  }
  error(...args: unknown[]): void {
    (this.logger.error as LogMethod)(...args);
  }
  warn(...args: unknown[]): void {
    (this.logger.warn as LogMethod)(...args);
  }
  info(...args: unknown[]): void {
    (this.logger.info as LogMethod)(...args);
  }
  debug(...args: unknown[]): void {
    (this.logger.debug as LogMethod)(...args);
  }
  trace(...args: unknown[]): void {
    (this.logger.trace as LogMethod)(...args);
  }
  silent(): void {}
}
