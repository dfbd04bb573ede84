import { describe, expect, it } from 'vitest';
import { argumentsTexts } from '../../src/mcp/arguments-text.js';

// The audit hashes `params.arguments` as written in the body: the scan must find exactly the
// characters JSON.parse read as that object, whatever the spacing, escapes and nesting.
describe('arguments as written in a request body', () => {
  it('finds the arguments object of a message, however it is spaced and ordered', () => {
    const body =
      ' {\n\t"params" : { "arguments" :\n {"b":1, "a" : [2,{"c":null}]} , "name":"q" } ,"method":"tools/call","id":1,"jsonrpc":"2.0"}\r\n';
    expect(argumentsTexts(body, false)).toEqual(['{"b":1, "a" : [2,{"c":null}]}']);
  });

  it('is not misled by braces, quotes, escapes and member names inside strings', () => {
    const args = '{"sql":"select \\"}\\" from t where x = \'{\' -- \\\\","params":{"arguments":{}},"k\\"":"\\u007d"}';
    const body = `{"jsonrpc":"2.0","id":"a}","method":"tools/call","params":{"name":"{\\"arguments\\":1}","arguments":${args}}}`;
    expect(argumentsTexts(body, false)).toEqual([args]);
    expect(JSON.parse(argumentsTexts(body, false)[0]!)).toEqual(JSON.parse(body).params.arguments);
  });

  it('compares member names after unescaping, as the parser does', () => {
    const body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","\\u0070arams":{"name":"q","\\u0061rguments":{"x":"caf\\u00e9 é 😀"}}}';
    expect(argumentsTexts(body, false)).toEqual(['{"x":"caf\\u00e9 é 😀"}']);
  });

  it('has no text where arguments are not an object, or sit at another depth', () => {
    expect(argumentsTexts('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":"{}"}}', false)).toEqual([
      undefined,
    ]);
    expect(argumentsTexts('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":[{"a":1}]}}', false)).toEqual([
      undefined,
    ]);
    expect(
      argumentsTexts('{"jsonrpc":"2.0","id":1,"method":"tools/call","arguments":{"a":1},"params":{"x":{"arguments":{"b":2}}}}', false),
    ).toEqual([undefined]);
    expect(argumentsTexts('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":null}}', false)).toEqual([
      undefined,
    ]);
  });

  it('gives one entry per element of a batch, in order', () => {
    const body =
      '[{"jsonrpc":"2.0","id":1,"method":"ping"} , {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"arguments":{"n":2},"name":"a"}},\n{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"p","arguments":{ }}}]';
    expect(argumentsTexts(body, true)).toEqual([undefined, '{"n":2}', undefined, '{ }']);
  });

  it('finds what JSON.parse finds, for generated messages and batches', () => {
    // A small deterministic generator: strings with every troublesome character, numbers, nesting.
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const pieces = ['"', '\\', '{', '}', '[', ']', ':', ',', 'a', ' ', 'é', '😀', '\n', '\u2028'];
    const string = () => Array.from({ length: Math.floor(random() * 8) }, () => pieces[Math.floor(random() * pieces.length)]).join('');
    const value = (depth: number): unknown => {
      const kind = Math.floor(random() * (depth > 3 ? 4 : 6));
      if (kind === 0) return string();
      if (kind === 1) return Math.floor(random() * 1e6) / 100;
      if (kind === 2) return [true, false, null][Math.floor(random() * 3)];
      if (kind === 3) return -1e-7;
      if (kind === 4) return Array.from({ length: Math.floor(random() * 3) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(random() * 4) }, (_, i) => [`${string()}${i}`, value(depth + 1)]));
    };
    const space = () => [' ', '', '\n  ', '\t'][Math.floor(random() * 4)]!;
    // JSON.stringify with random spacing: re-indented by a replacer-free reformat of each token gap.
    const spaced = (json: string) => json.replace(/([{}[\],:])/g, (token) => (random() < 0.3 ? `${space()}${token}${space()}` : token));
    for (let n = 0; n < 300; n++) {
      const count = 1 + Math.floor(random() * 3);
      const messages = Array.from({ length: count }, (_, i) => ({
        jsonrpc: '2.0',
        id: i,
        method: 'tools/call',
        params: {
          name: string(),
          arguments: Object.fromEntries(Array.from({ length: Math.floor(random() * 4) }, (_, k) => [`k${k}${string()}`, value(0)])),
        },
      }));
      const batch = count > 1;
      // Spacing only outside strings: spaced() is applied to a version whose strings are placeholders.
      const strings: string[] = [];
      const skeleton = JSON.stringify(batch ? messages : messages[0]).replace(
        /"(?:[^"\\]|\\.)*"/g,
        (s) => (strings.push(s), `"\u0000${strings.length - 1}"`),
      );
      const body = spaced(skeleton).replace(/"\u0000(\d+)"/g, (_, i: string) => strings[Number(i)]!);
      const parsed = JSON.parse(body) as unknown;
      const expected = (batch ? (parsed as { params: { arguments: unknown } }[]) : [parsed as { params: { arguments: unknown } }]).map(
        (m) => m.params.arguments,
      );
      const found = argumentsTexts(body, batch);
      expect(
        found.map((text) => JSON.parse(text!) as unknown),
        body,
      ).toEqual(expected);
      for (const text of found) expect(body).toContain(text);
    }
  });
});
