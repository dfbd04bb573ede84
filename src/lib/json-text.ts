// Scanning a JSON text that JSON.parse has accepted, for what the parsed value no longer says:
// how many member names were written (duplicate keys, auth/verify.ts) and where a member's value
// stands (the audit's arguments, mcp/arguments-text.ts). Strings are skipped with indexOf.

/** Space, tab, line feed, carriage return: the only white space JSON allows between tokens. */
export function isJsonWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

/** The index of the quote that closes the string opened at `open`: the first one not after an odd run of backslashes (-1: none, not valid JSON). */
export function closingQuote(text: string, open: number): number {
  let end = text.indexOf('"', open + 1);
  while (end !== -1) {
    let backslashes = 0;
    while (text.charCodeAt(end - 1 - backslashes) === 0x5c /* \ */) backslashes++;
    if (backslashes % 2 === 0) return end;
    end = text.indexOf('"', end + 1);
  }
  return -1;
}

/** Member names written in a valid JSON text: strings followed by a colon. */
export function countMemberNames(json: string): number {
  let count = 0;
  let start = json.indexOf('"');
  while (start !== -1) {
    const end = closingQuote(json, start);
    if (end === -1) break;
    let next = end + 1;
    while (isJsonWhitespace(json.charCodeAt(next))) next++;
    if (json.charCodeAt(next) === 0x3a /* : */) count++;
    start = json.indexOf('"', next);
  }
  return count;
}

/** Own members of every object in a parsed JSON value, nested ones included (no recursion: depth is the sender's choice). */
function countMembers(root: object): number {
  let count = 0;
  const pending: object[] = [root];
  for (let value = pending.pop(); value !== undefined; value = pending.pop()) {
    if (Array.isArray(value)) {
      for (const child of value as unknown[]) if (typeof child === 'object' && child !== null) pending.push(child);
      continue;
    }
    // for-in, not Object.values: no array per object. JSON.parse makes plain objects, so every
    // enumerable name is an own one (`__proto__` included).
    for (const name in value) {
      count++;
      const child = (value as Record<string, unknown>)[name];
      if (typeof child === 'object' && child !== null) pending.push(child);
    }
  }
  return count;
}

/**
 * Whether any object in a JSON text names a member twice (compared after unescaping, as the
 * parser compares them): the parse kept one member per distinct name, so a duplicate shows as
 * more names written than members parsed. Counting needs no sets and no key strings.
 */
export function hasDuplicateKeys(json: string, parsed: object = JSON.parse(json) as object): boolean {
  return countMemberNames(json) !== countMembers(parsed);
}
