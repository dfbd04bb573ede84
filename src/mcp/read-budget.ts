// How many bytes of request bodies may be in memory being read and parsed at once, across all
// requests: each body read for MCP is held whole (up to MCP_MAX_BODY_BYTES) and parsed, about
// three times its size for a moment (the bytes, the text, the parsed value). MAX_CONNECTIONS=auto
// counts a connection at 40 KiB; without this bound, a few hundred connections each sending a
// 1 MiB body at once would hold gigabytes (bench:flood-initialize). A read is admitted for the
// size it declares (Content-Length, else MCP_MAX_BODY_BYTES), first come first served; the rest
// wait, unread (TCP holds their bytes), until admitted or gone.

/** Bytes of bodies being read at once: enough for 16 of the largest, never less than one. */
export const READ_BUDGET_BYTES = 16 * 1024 * 1024;

export class ReadBudget {
  private used = 0;
  private readonly waiting: { bytes: number; admit: () => void }[] = [];

  constructor(private readonly max: number) {}

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
      signal.onCancel(() => {
        const index = this.waiting.indexOf(entry);
        if (index === -1) return;
        this.waiting.splice(index, 1);
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
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.bytes)) this.waiting.shift()!.admit();
  }
}
