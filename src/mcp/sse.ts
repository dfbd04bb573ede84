// An incremental text/event-stream reader (WHATWG HTML, "Parsing an event stream") that keeps
// only the event being read, and at most `maxEventBytes` of it: a longer event is skipped and
// reported as oversized. It never holds bytes back from anyone: it reports where each event ends
// in the chunk it was given, so a caller holding a stream can cut it at event boundaries. A
// caller that writes events itself asks for their other lines too (`keepLines`), so that what it
// writes is what was read, never the raw bytes beside it.

const LF = 0x0a;
const CR = 0x0d;

/**
 * `data` is the event's data (its data lines joined by LF), undefined when it had none or was
 * oversized. `lines`: with `keepLines`, its comments and its id, event and retry fields as read
 * (other fields are ignored by every reader of the format, and dropped).
 */
export type EventListener = (data: string | undefined, end: number, oversized: boolean, lines: readonly string[]) => void;

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const NO_LINES: readonly string[] = [];

/** A comment, or a field that is not data and that readers of the format act on. */
function isKeptLine(line: Buffer): boolean {
  if (line[0] === 0x3a) return true;
  const colon = line.indexOf(0x3a);
  const name = line.toString('latin1', 0, colon === -1 ? line.length : colon);
  return name === 'id' || name === 'event' || name === 'retry';
}

export class SseReader {
  /** The current line's bytes from earlier chunks. */
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private data: string[] = [];
  private lines: string[] = [];
  private eventBytes = 0;
  /** Bytes of a byte order mark matched at the stream's start; -1 once past it. */
  private bom = 0;
  private oversized = false;
  /** A chunk ended with CR: an LF starting the next one belongs to that line end. */
  private afterCr = false;

  constructor(
    private readonly maxEventBytes: number,
    private readonly keepLines = false,
  ) {}

  /** Reads one chunk; `onEvent` is called for every event that ends in it, with the offset just past it. */
  feed(chunk: Buffer, onEvent: EventListener): void {
    let position = 0;
    if (this.bom >= 0) {
      // One byte order mark at the start of the stream is not part of its first line (as clients read it).
      while (this.bom < 3 && position < chunk.length && chunk[position] === BOM[this.bom]) {
        position++;
        this.bom++;
      }
      if (this.bom < 3 && position === chunk.length) return;
      if (this.bom > 0 && this.bom < 3) this.keepPartial(BOM.subarray(0, this.bom));
      this.bom = -1;
    }
    if (this.afterCr && chunk[position] === LF) position++;
    this.afterCr = false;
    const length = chunk.length;
    let cr = chunk.indexOf(CR, position);
    while (position < length) {
      const lf = chunk.indexOf(LF, position);
      if (cr !== -1 && cr < position) cr = chunk.indexOf(CR, position);
      let end: number;
      let next: number;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        end = cr;
        if (cr + 1 === length) {
          this.afterCr = true;
          next = length;
        } else {
          next = chunk[cr + 1] === LF ? cr + 2 : cr + 1;
        }
      } else if (lf !== -1) {
        end = lf;
        next = lf + 1;
      } else {
        this.keepPartial(chunk.subarray(position));
        return;
      }
      if (this.line(chunk, position, end)) {
        const { data, lines, oversized } = this;
        this.data = [];
        if (lines.length > 0) this.lines = [];
        this.eventBytes = 0;
        this.oversized = false;
        onEvent(oversized || data.length === 0 ? undefined : data.join('\n'), next, oversized, oversized ? NO_LINES : lines);
      }
      position = next;
    }
  }

  /**
   * The stream is over: an event it left unfinished (its lines ended, but no blank line after
   * them) is dispatched, as the Go clients read it (go-sdk and mcp-go do; browsers and the
   * TypeScript SDK drop it). A last line without its line end is not read: mcp-go and the
   * TypeScript SDK drop it (go-sdk alone reads it). For a stream passed as it came, so that what
   * is read of it is what Coder's client library reads.
   */
  end(onEvent: EventListener): void {
    const { data, lines, oversized } = this;
    this.data = [];
    this.lines = [];
    this.partial = [];
    this.partialBytes = 0;
    if (oversized || data.length > 0) onEvent(oversized ? undefined : data.join('\n'), 0, oversized, oversized ? NO_LINES : lines);
  }

  private keepPartial(bytes: Buffer): void {
    if (this.oversized) return;
    this.partialBytes += bytes.length;
    if (this.eventBytes + this.partialBytes > this.maxEventBytes) return this.overflow();
    // Copied: the chunk's memory belongs to the upstream connection's next read.
    this.partial.push(Buffer.from(bytes));
  }

  private overflow(): void {
    this.oversized = true;
    this.data = [];
    this.lines = [];
    this.partial = [];
    this.partialBytes = 0;
  }

  /** One line ends at `end`; returns true when it was the blank line that ends an event. */
  private line(chunk: Buffer, start: number, end: number): boolean {
    let line: Buffer;
    if (this.partial.length > 0) {
      this.partial.push(chunk.subarray(start, end));
      line = Buffer.concat(this.partial);
      this.partial = [];
      this.partialBytes = 0;
    } else {
      line = chunk.subarray(start, end);
    }
    if (line.length === 0) return true;
    if (this.oversized) return false;
    this.eventBytes += line.length + 1;
    if (this.eventBytes > this.maxEventBytes) {
      this.overflow();
      return false;
    }
    // Only the data field matters here: "data" then ":" and an optional space, or "data" alone.
    if (line[0] === 0x64 && line[1] === 0x61 && line[2] === 0x74 && line[3] === 0x61 && (line.length === 4 || line[4] === 0x3a)) {
      const from = line.length > 5 && line[5] === 0x20 ? 6 : 5;
      this.data.push(line.length <= 5 ? '' : line.toString('utf8', from));
    } else if (this.keepLines && isKeptLine(line)) this.lines.push(line.toString('utf8'));
    return false;
  }
}
