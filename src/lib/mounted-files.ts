// Files mounted from a Kubernetes ConfigMap or Secret change by a `..data` symlink swap in their
// directory, so the directories are watched, not the files (a watch on a file follows its old
// inode); a burst of events (a swap is several renames) is read once after a short settle time,
// reads never overlap, and an optional slow timer re-reads for mounts where no event comes.

import { watch, realpathSync, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';

export interface MountedFilesOptions {
  /** Events within this time are read once. */
  settleMs: number;
  /** Re-read this often whatever the events say (undefined: only on events). */
  recheckMs?: number;
  /** A directory that cannot be watched (at start, or later: an unmounted volume). */
  onWatchError(directory: string, error: Error): void;
}

export interface MountedFilesWatch {
  /** Resolves once a pending change has been read (tests wait on it). */
  settled(): Promise<void>;
  close(): void;
}

/** Calls `read` after the files (or the symlinks they are reached through) change. */
export function watchMountedFiles(files: readonly string[], read: () => Promise<void>, options: MountedFilesOptions): MountedFilesWatch {
  const directories = new Set<string>();
  for (const file of files) {
    directories.add(dirname(file));
    try {
      directories.add(dirname(realpathSync(file)));
    } catch {
      // Missing for now (mid-swap): its directory is watched all the same.
    }
  }
  let reading: Promise<void> = Promise.resolve();
  const readNow = () => {
    reading = reading.then(read);
  };
  let settle: NodeJS.Timeout | undefined;
  const soon = () => {
    clearTimeout(settle);
    settle = setTimeout(() => {
      settle = undefined;
      readNow();
    }, options.settleMs);
    settle.unref();
  };
  const watchers: FSWatcher[] = [];
  for (const directory of directories) {
    try {
      const watcher = watch(directory, { persistent: false }, soon);
      watcher.on('error', (error) => options.onWatchError(directory, error));
      watchers.push(watcher);
    } catch (error) {
      options.onWatchError(directory, error as Error);
    }
  }
  const timer = options.recheckMs === undefined ? undefined : setInterval(readNow, options.recheckMs);
  timer?.unref();
  return {
    settled: async () => {
      while (settle !== undefined) await new Promise((resolve) => setTimeout(resolve, options.settleMs));
      await reading;
    },
    close() {
      for (const watcher of watchers) watcher.close();
      clearTimeout(settle);
      clearInterval(timer);
    },
  };
}
