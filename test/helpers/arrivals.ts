// Waiting on what arrives while a test runs (calls a server ran, log lines written): resolves once
// enough has arrived, bounded by the test's timeout rather than a sleep.

export interface Arrivals<T> {
  /** Tells the waiters that entries may have arrived. */
  wake(): void;
  /** Resolves with the entries matching `where` once there are `count` of them. */
  waitFor(where: (entry: T) => boolean, count?: number): Promise<T[]>;
}

/** Waits on the entries `entries()` returns at each wake(). */
export function arrivals<T>(entries: () => T[]): Arrivals<T> {
  const waiters = new Set<() => void>();
  return {
    wake() {
      for (const wake of waiters) wake();
    },
    waitFor(where, count = 1) {
      return new Promise((resolve) => {
        const check = () => {
          const found = entries().filter(where);
          if (found.length < count) return;
          waiters.delete(check);
          resolve(found);
        };
        waiters.add(check);
        check();
      });
    },
  };
}
