// A bounded least-recently-used map, shared by the verdict cache and the MCP session table.

interface Entry<V> {
  readonly key: string;
  value: V;
  newer: Entry<V> | undefined;
  older: Entry<V> | undefined;
}

/**
 * A bounded map that forgets the least recently used entry first: a Map for lookup and a list
 * from newest to oldest, so a hit only relinks two entries and an eviction takes the tail.
 * (Not a Map's own insertion order with a long-lived iterator for the oldest key: V8 keeps every
 * table a Map outgrows for as long as such an iterator may still need it, 150 bytes a hit.)
 */
export class Lru<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private newest: Entry<V> | undefined;
  private oldest: Entry<V> | undefined;

  constructor(private readonly maxEntries: number) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry !== this.newest) {
      this.unlink(entry);
      this.pushNewest(entry);
    }
    return entry.value;
  }

  set(key: string, value: V): void {
    this.delete(key);
    if (this.entries.size >= this.maxEntries) this.delete(this.oldest!.key);
    const entry: Entry<V> = { key, value, newer: undefined, older: undefined };
    this.entries.set(key, entry);
    this.pushNewest(entry);
  }

  delete(key: string): void {
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    this.entries.delete(key);
    this.unlink(entry);
  }

  private unlink(entry: Entry<V>): void {
    if (entry.newer === undefined) this.newest = entry.older;
    else entry.newer.older = entry.older;
    if (entry.older === undefined) this.oldest = entry.newer;
    else entry.older.newer = entry.newer;
    entry.newer = undefined;
    entry.older = undefined;
  }

  private pushNewest(entry: Entry<V>): void {
    entry.older = this.newest;
    if (this.newest === undefined) this.oldest = entry;
    else this.newest.newer = entry;
    this.newest = entry;
  }
}
