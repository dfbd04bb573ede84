// How many bytes of request bodies may be in memory being read and parsed at once, across all
// requests: each body read for MCP is held whole (up to MCP_MAX_BODY_BYTES) and parsed, about
// three times its size for a moment (the bytes, the text, the parsed value). MAX_CONNECTIONS=auto
// counts a connection at 40 KiB; without this bound, a few hundred connections each sending a
// 1 MiB body at once would hold gigabytes (bench:flood-initialize). A read is admitted for the
// size it declares (Content-Length, else MCP_MAX_BODY_BYTES), first come first served, and holds
// it until the upstream has the body (or the request is refused); the rest wait, unread, until
// admitted or gone. A waiting request is not free: Node has read the first chunk of its body
// (one 64 KiB read) before it stops reading the socket. So the line is bounded too: past
// MAX_WAITING_READS, a read is not queued (the caller refuses the request, to be sent again).

/** Bytes of bodies being read at once: enough for 16 of the largest, never less than one. */
export const READ_BUDGET_BYTES = 16 * 1024 * 1024;
/** Reads waiting for their place at once: 256 of Node's 64 KiB socket reads, 16 MiB. */
export const MAX_WAITING_READS = 256;

export class ReadBudget {
  private used = 0;
  private readonly waiting: { bytes: number; admit: () => void }[] = [];

  constructor(
    private readonly max: number,
    /** The number of reads waiting, each time it changes (a gauge). */
    private readonly onWaiting: (waiting: number) => void = () => {},
    private readonly maxWaiting = MAX_WAITING_READS,
  ) {}

  /** Whether a read of `bytes` would have to wait, and the line is full. */
  full(bytes: number): boolean {
    return this.waiting.length >= this.maxWaiting && !(this.waiting.length === 0 && this.fits(bytes));
  }

  /** Resolves once `bytes` are admitted; `cancel` (the client went) gives up the place in line. */
  admit(bytes: number, signal: { onCancel(cancel: () => void): void }): Promise<boolean> {
    if (this.waiting.length === 0 && this.fits(bytes)) {
      this.used += bytes;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const entry = {
        bytes,
        admit: () => {
          this.used += bytes;
          resolve(true);
        },
      };
      this.waiting.push(entry);
      this.onWaiting(this.waiting.length);
      signal.onCancel(() => {
        const index = this.waiting.indexOf(entry);
        if (index === -1) return;
        this.waiting.splice(index, 1);
        this.onWaiting(this.waiting.length);
        resolve(false);
        this.wake();
      });
    });
  }

  release(bytes: number): void {
    this.used -= bytes;
    this.wake();
  }

  /** A read larger than the whole budget still goes alone. */
  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.max;
  }

  private wake(): void {
    const before = this.waiting.length;
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.bytes)) this.waiting.shift()!.admit();
    if (this.waiting.length !== before) this.onWaiting(this.waiting.length);
  }
}
