// Strings a client chose, kept or written by the sidecar: cut to a number of UTF-8 bytes.

/** A string of at most `bytes` UTF-8 bytes, cut at a character boundary, `…` marking a cut (a new string: no slice of a large one is kept alive). */
export function cutUtf8(text: string, bytes: number): string {
  if (text.length * 3 <= bytes || Buffer.byteLength(text) <= bytes) return text;
  const buffer = Buffer.from(text);
  let end = bytes;
  // Back off continuation bytes (10xxxxxx) so no character is split.
  while (end > 0 && (buffer[end]! & 0xc0) === 0x80) end--;
  return `${buffer.toString('utf8', 0, end)}…`;
}
