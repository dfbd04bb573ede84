// An incremental text/event-stream reader (WHATWG HTML, "Parsing an event stream") that keeps
// only the event being read, and at most `maxEventBytes` of it: a longer event is skipped and
// reported as oversized. It never holds bytes back from anyone: it reports where each event ends
// in the chunk it was given, so a caller holding a stream can cut it at event boundaries.

const LF = 0x0a;
const CR = 0x0d;

/** `data` is the event's data (its data lines joined by LF), undefined when it had none or was oversized. */
export type EventListener = (data: string | undefined, end: number, oversized: boolean) => void;

export class SseReader {
  /** The current line's bytes from earlier chunks. */
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private data: string[] = [];
  private eventBytes = 0;
  private oversized = false;
  /** A chunk ended with CR: an LF starting the next one belongs to that line end. */
  private afterCr = false;

  constructor(private readonly maxEventBytes: number) {}

  /** Reads one chunk; `onEvent` is called for every event that ends in it, with the offset just past it. */
  feed(chunk: Buffer, onEvent: EventListener): void {
    let position = 0;
    if (this.afterCr && chunk[0] === LF) position = 1;
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
        const { data, oversized } = this;
        this.data = [];
        this.eventBytes = 0;
        this.oversized = false;
        onEvent(oversized || data.length === 0 ? undefined : data.join('\n'), next, oversized);
      }
      position = next;
    }
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
    }
    return false;
  }
}
