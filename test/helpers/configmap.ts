// A mounted ConfigMap as the kubelet updates it: each version is written into a fresh
// timestamped directory, a temporary symlink pointed at it is renamed over `..data`, and the
// file itself is a symlink through `..data`.

import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ConfigMap {
  /** The path to mount as POLICY_FILE (a symlink through `..data`). */
  readonly file: string;
  /** One ConfigMap update. */
  publish(text: string): void;
}

export function configMap(name: string, text: string): ConfigMap {
  const dir = mkdtempSync(join(tmpdir(), 'configmap-'));
  let version = 0;
  const publish = (next: string) => {
    const data = `..2026_12_01_00_00_${String(++version).padStart(2, '0')}`;
    mkdirSync(join(dir, data));
    writeFileSync(join(dir, data, name), next);
    symlinkSync(data, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  };
  publish(text);
  symlinkSync(`..data/${name}`, join(dir, name));
  return { file: join(dir, name), publish };
}

/** Resolves when `condition` holds, checked every 20 ms as the watcher reloads; fails after 5 s. */
export async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
