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
