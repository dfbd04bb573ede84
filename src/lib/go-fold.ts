// Member names as Go's encoding/json matches them to struct fields: a name that is not a field's
// exactly still sets it when the two are equal under Unicode simple case folding (`Name`, `NAME`,
// `nAme`, and `ſ` U+017F for `s`, `K` U+212A for `k`), the last such member winning. mcp-go
// decodes every MCP message so; the TypeScript SDK and this sidecar compare names exactly. Two
// names with the same fold key are, for such a server, one name.
//
// FOLDS is encoding/json's own table (each rune to the smallest rune of its fold orbit, Go 1.26,
// Unicode 15.0), printed by test/go/cmd/gofold; test/interop/go-fold.test.ts checks it against
// that program.

/** `start±delta` or `start±delta*count/stride` (hex): `count` runes from `start`, `stride` apart, each folding to itself plus `delta`. */
export const FOLDS =
  'e0-20*17/1,f8-20*7/1,101-1*18/2,133-1*3/2,13a-1*8/2,14b-1*17/2,178-79,17a-1*3/2,17f-12c,183-1*2/2,188-1*2/4,192-1*2/7,' +
  '1a1-1*3/2,1a8-1*2/5,1b0-1*2/4,1b6-1*2/3,1bd-1*2/8,1c6-2,1c8-1,1c9-2,1cb-1,1cc-2,1ce-1*8/2,1dd-4f,1df-1*9/2,1f2-1,1f3-2,' +
  '1f5-1,1f6-61,1f7-38,1f9-1*14/2,220-82,223-1*9/2,23c-1,23d-a3,242-1,243-c3,247-1*5/2,253-d2,254-ce,256-cd*2/1,259-ca,' +
  '25b-cb,260-cd,263-cf,268-d1,269-d3*2/6,272-d5,275-d6,280-da*2/3,288-da,289-45,28a-d9*2/1,28c-47,292-db,371-1*2/2,377-1,' +
  '399-54,39c-2e7,3ac-26,3ad-25*3/1,3b1-20*8/1,3b9-74,3ba-20*2/1,3bc-307,3bd-20*5/1,3c2-1f,3c3-20*9/1,3cc-40,3cd-3f*2/1,' +
  '3d0-3e,3d1-39,3d5-2f,3d6-36,3d7-8,3d9-1*c/2,3f0-56,3f1-50,3f3-74,3f4-5c,3f5-60,3f8-1,3f9-7,3fb-1,3fd-82*3/1,430-20*20/1,' +
  '450-50*10/1,461-1*11/2,48b-1*1b/2,4c2-1*7/2,4cf-f,4d1-1*30/2,561-30*26/1,13f8-8*6/1,1c80-186e,1c81-186d,1c82-1864,' +
  '1c83-1862*2/1,1c85-1863,1c86-185c,1c87-1825,1c90-bc0*2b/1,1cbd-bc0*3/1,1e01-1*4b/2,1e9b-3b,1e9e-1dbf,1ea1-1*30/2,' +
  '1f08-8*8/1,1f18-8*6/1,1f28-8*8/1,1f38-8*8/1,1f48-8*6/1,1f59-8*4/2,1f68-8*8/1,1f88-8*8/1,1f98-8*8/1,1fa8-8*8/1,' +
  '1fb8-8*2/1,1fba-4a*2/1,1fbc-9,1fbe-1c79,1fc8-56*4/1,1fcc-9,1fd8-8*2/1,1fda-64*2/1,1fe8-8*2/1,1fea-70*2/1,1fec-7,' +
  '1ff8-80*2/1,1ffa-7e*2/1,1ffc-9,2126-1d7d,212a-20df,212b-2066,214e-1c,2170-10*10/1,2184-1,24d0-1a*1a/1,2c30-30*30/1,' +
  '2c61-1,2c62-29f7,2c63-ee6,2c64-29e7,2c65-2a2b,2c66-2a28,2c68-1*3/2,2c6d-2a1c,2c6e-29fd,2c6f-2a1f,2c70-2a1e,2c73-1*2/3,' +
  '2c7e-2a3f*2/1,2c81-1*32/2,2cec-1*2/2,2cf3-1,2d00-1c60*26/1,2d27-1c60*2/6,a641-1*5/2,a64a-89c2,a64b-89c3,a64d-1*11/2,' +
  'a681-1*e/2,a723-1*7/2,a733-1*1f/2,a77a-1*2/2,a77d-8a04,a77f-1*5/2,a78c-1,a78d-a528,a791-1*2/2,a797-1*a/2,a7aa-a544,' +
  'a7ab-a54f,a7ac-a54b,a7ad-a541,a7ae-a544,a7b0-a512,a7b1-a52a,a7b2-a515,a7b5-1*8/2,a7c4-30,a7c5-a543,a7c6-8a38,a7c8-1*2/2,' +
  'a7d1-1*2/6,a7d9-1*2/1d,ab53-3a0,ab70-97d0*50/1,ff41-20*1a/1,10428-28*28/1,104d8-28*24/1,10597-27*b/1,105a3-27*f/1,' +
  '105b3-27*7/1,105bb-27*2/1,10cc0-40*33/1,118c0-20*20/1,16e60-20*20/1,1e922-22*22/1';

let table: Map<number, number> | undefined;

function folds(): Map<number, number> {
  if (table !== undefined) return table;
  table = new Map();
  for (const entry of FOLDS.split(',')) {
    const match = /^([0-9a-f]+)([+-][0-9a-f]+)(?:\*([0-9a-f]+)\/([0-9a-f]+))?$/.exec(entry)!;
    const start = parseInt(match[1]!, 16);
    const delta = parseInt(match[2]!, 16);
    const count = match[3] === undefined ? 1 : parseInt(match[3], 16);
    const stride = match[4] === undefined ? 1 : parseInt(match[4], 16);
    for (let i = 0; i < count; i++) table.set(start + i * stride, start + i * stride + delta);
  }
  return table;
}

/** Whether a name could fold to another: it has an ASCII capital or a character above ASCII. */
export function mayFold(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || c >= 0x80) return true;
  }
  return false;
}

/** The name as encoding/json compares it: ASCII letters upper-cased, every other rune to the smallest of its fold orbit. */
export function goFoldKey(name: string): string {
  if (!mayFold(name)) return name.toUpperCase();
  const map = folds();
  let key = '';
  for (const character of name) {
    const code = character.codePointAt(0)!;
    if (code < 0x80) key += code >= 0x61 && code <= 0x7a ? String.fromCharCode(code - 0x20) : character;
    else {
      const folded = map.get(code);
      key += folded === undefined ? character : String.fromCodePoint(folded);
    }
  }
  return key;
}
