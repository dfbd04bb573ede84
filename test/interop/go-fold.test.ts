import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { FOLDS, goFoldKey } from '../../src/lib/go-fold.js';
import { useGo } from '../helpers/go.js';

// The sidecar compares member names as Go's encoding/json does (src/lib/go-fold.ts): its table
// must be the one Go prints (test/go/cmd/gofold), and fold alike what JavaScript's own simple
// case folding (a /iu regular expression) folds alike.
const go = useGo();

describe.skipIf(!go)("encoding/json's member-name folding", () => {
  it('is the table Go prints', () => {
    const [, table] = execFileSync(go!.gofold, { encoding: 'utf8' }).split('\n');
    expect(FOLDS).toBe(table);
  });

  it('folds together exactly the characters JavaScript case-folds together, in the planes with letters', () => {
    const differ: string[] = [];
    for (let code = 0x80; code < 0x1f000; code++) {
      if (code >= 0xd800 && code <= 0xdfff) continue;
      const character = String.fromCodePoint(code);
      const key = goFoldKey(character);
      // Go folds to the smallest character of the orbit: it must be one JavaScript matches too.
      if (key !== character && !new RegExp(`^${character}$`, 'iu').test(key)) differ.push(code.toString(16));
    }
    // Unicode versions apart (Go 1.26: 15.0; Node: its ICU's), none.
    expect(differ).toEqual([]);
  });
});
