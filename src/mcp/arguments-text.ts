// Where each message's `params.arguments` object is written in a request body: the audit hashes
// those characters, the arguments exactly as sent (and as the upstream receives them), instead of
// re-serialising the parsed object, which cost a second string as long as the arguments and
// 1.3 µs for 1 KB; the scan costs 0.3 µs (bench/RESULTS.md, issues 18 and 19).
//
// The scan runs only over text that JSON.parse has accepted and that names no member twice
// (messages.ts), so it needs no error handling: strings are skipped (lib/json-text.ts), and only
// what lies between them is walked character by character.

import { closingQuote, isJsonWhitespace } from '../lib/json-text.js';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;

/** Whether the member name written from `open` to `close` (its quotes) is `name`, compared after unescaping as the parser compares. */
function isMemberName(text: string, open: number, close: number, name: string): boolean {
  const raw = close - open - 1;
  // Plain spelling, compared in place: no string made for the names that are not it.
  if (raw === name.length && text.startsWith(name, open + 1)) return true;
  // Escaped, it is longer than written plain: only then is it unescaped.
  if (raw <= name.length) return false;
  for (let i = open + 1; i < close; i++) {
    if (text.charCodeAt(i) === BACKSLASH) return JSON.parse(text.slice(open, close + 1)) === name;
  }
  return false;
}

/**
 * The text of `params.arguments` for each message of a valid JSON-RPC body (one entry for a
 * single message, one per element of a batch), undefined where a message has no arguments
 * object. Member names are compared after unescaping, as the parser compares them.
 */
export function argumentsTexts(text: string, batch: boolean): (string | undefined)[] {
  const texts: (string | undefined)[] = [];
  // Depths count open objects and arrays: a message's members are at messageDepth.
  const messageDepth = batch ? 2 : 1;
  let depth = 0;
  let message = -1;
  let paramsDepth = -1;
  let argumentsDepth = -1;
  let argumentsStart = 0;
  // The member just named is params (of a message) or arguments (of params): its value comes next.
  let next: 'params' | 'arguments' | undefined;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const code = text.charCodeAt(i);
    if (code === QUOTE) {
      const close = closingQuote(text, i);
      // Unreachable for text JSON.parse accepted; a scan that cannot go on finds nothing more.
      if (close === -1) break;
      let after = close + 1;
      while (isJsonWhitespace(text.charCodeAt(after))) after++;
      if (text.charCodeAt(after) === COLON) {
        next =
          depth === messageDepth && isMemberName(text, i, close, 'params')
            ? 'params'
            : depth === paramsDepth && isMemberName(text, i, close, 'arguments')
              ? 'arguments'
              : undefined;
        i = after;
      } else {
        next = undefined;
        i = close;
      }
    } else if (code === 0x7b /* { */ || code === 0x5b /* [ */) {
      depth++;
      if (depth === messageDepth) texts[++message] = undefined;
      if (code === 0x7b && next === 'params') paramsDepth = depth;
      else if (code === 0x7b && next === 'arguments') {
        argumentsDepth = depth;
        argumentsStart = i;
      }
      next = undefined;
    } else if (code === 0x7d /* } */ || code === 0x5d /* ] */) {
      if (depth === argumentsDepth) {
        texts[message] = text.slice(argumentsStart, i + 1);
        argumentsDepth = -1;
      }
      if (depth === paramsDepth) paramsDepth = -1;
      depth--;
    } else if (!isJsonWhitespace(code) && code !== 0x2c /* , */) {
      // A number, true, false or null: the value named last is not an object.
      next = undefined;
    }
  }
  return texts;
}
