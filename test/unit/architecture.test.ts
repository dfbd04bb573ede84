import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// The import rules of ARCHITECTURE.md, read off the code: a change that crosses a forbidden line
// fails here, naming the file, the import and the rule.

const src = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

interface Import {
  from: string; // path under src/, e.g. "auth/verify.ts"
  to: string;
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : name.endsWith('.ts') ? [path] : [];
  });
}

function importsOf(file: string): Import[] {
  const text = readFileSync(file, 'utf8');
  const found: Import[] = [];
  // Static imports and re-exports (possibly over several lines), and dynamic import().
  for (const match of text.matchAll(/^(import|export)(\s+type)?\b[^;]*?\bfrom\s+'(\.[^']+)'/gms)) {
    found.push({ from: file, to: match[3]!, typeOnly: match[2] !== undefined });
  }
  for (const match of text.matchAll(/^import\s+'(\.[^']+)'/gm)) found.push({ from: file, to: match[1]!, typeOnly: false });
  for (const match of text.matchAll(/\bimport\(\s*'(\.[^']+)'\s*\)/g)) found.push({ from: file, to: match[1]!, typeOnly: false });
  return found.map(({ from, to, typeOnly }) => ({
    from: relative(src, from),
    to: relative(src, resolve(dirname(from), to)).replace(/\.js$/, '.ts'),
    typeOnly,
  }));
}

/** The first folder under src/ ("" for the root files: main, serve, app). */
const stage = (path: string) => (path.includes('/') ? path.slice(0, path.indexOf('/')) : '');

interface Rule {
  name: string;
  broken: (i: Import) => boolean;
}

const RULES: Rule[] = [
  { name: 'lib/ depends on nothing of ours', broken: (i) => stage(i.from) === 'lib' && stage(i.to) !== 'lib' },
  { name: 'config/ depends only on lib/', broken: (i) => stage(i.from) === 'config' && !['config', 'lib'].includes(stage(i.to)) },
  {
    name: 'observability/ knows no stage of the request (auth, http, mcp)',
    broken: (i) => stage(i.from) === 'observability' && ['auth', 'http', 'mcp', ''].includes(stage(i.to)),
  },
  {
    name: 'the stages (auth, http, mcp) share only types with each other; app.ts wires them',
    broken: (i) => {
      const [a, b] = [stage(i.from), stage(i.to)];
      return ['auth', 'http', 'mcp'].includes(a) && ['auth', 'http', 'mcp'].includes(b) && a !== b && !i.typeOnly;
    },
  },
  { name: 'auth/ never imports mcp/', broken: (i) => stage(i.from) === 'auth' && stage(i.to) === 'mcp' },
  {
    name: 'http/ never imports mcp/ (MCP plugs in through an interface app.ts passes)',
    broken: (i) => stage(i.from) === 'http' && stage(i.to) === 'mcp',
  },
  {
    name: 'the tool policy and the rate limits are independent (mcp/policy-file.ts composes them)',
    broken: (i) =>
      (i.from.startsWith('mcp/policy/') && i.to.startsWith('mcp/limits/')) ||
      (i.from.startsWith('mcp/limits/') && i.to.startsWith('mcp/policy/')),
  },
  {
    name: 'tracing/ sees the stages through their types only',
    broken: (i) => stage(i.from) === 'tracing' && ['auth', 'http', 'mcp'].includes(stage(i.to)) && !i.typeOnly,
  },
  {
    name: 'tracing/ is loaded only by app.ts, when an endpoint is configured (else OpenTelemetry stays unloaded)',
    broken: (i) => stage(i.to) === 'tracing' && stage(i.from) !== 'tracing' && !i.typeOnly && i.from !== 'app.ts',
  },
  {
    name: 'nothing imports the wiring (app.ts, serve.ts, main.ts)',
    broken: (i) => ['app.ts', 'serve.ts', 'main.ts'].includes(i.to) && i.from !== 'main.ts' && i.from !== 'serve.ts',
  },
];

const imports = sourceFiles(src).flatMap(importsOf);

describe('the import rules of ARCHITECTURE.md', () => {
  it('reads the imports of the code (the rules below are not vacuous)', () => {
    expect(imports.length).toBeGreaterThan(100);
    expect(imports.some((i) => i.from === 'app.ts' && i.to === 'auth/verify.ts')).toBe(true);
    expect(imports.some((i) => i.typeOnly && stage(i.from) === 'mcp' && stage(i.to) === 'auth')).toBe(true);
  });

  it.each(RULES.map((rule) => [rule.name, rule] as const))('%s', (_name, rule) => {
    const broken = imports.filter(rule.broken).map((i) => `${i.from} imports ${i.to}${i.typeOnly ? ' (type)' : ''}`);
    expect(broken).toEqual([]);
  });

  it('OpenTelemetry is imported only under tracing/ (elsewhere as types at most)', () => {
    const outside = sourceFiles(src)
      .filter((file) => stage(relative(src, file)) !== 'tracing')
      .filter((file) => /^(import|export)\s+(?!type\b)[^;]*?\bfrom\s+'@opentelemetry\//ms.test(readFileSync(file, 'utf8')));
    expect(outside.map((file) => relative(src, file))).toEqual([]);
  });

  it('every rule can catch a crossing', () => {
    const crossings: Import[] = [
      { from: 'lib/lru.ts', to: 'auth/verify.ts', typeOnly: true },
      { from: 'config/config.ts', to: 'observability/log.ts', typeOnly: false },
      { from: 'observability/metrics.ts', to: 'mcp/audit.ts', typeOnly: true },
      { from: 'mcp/context.ts', to: 'auth/verify.ts', typeOnly: false },
      { from: 'auth/verify.ts', to: 'mcp/guard.ts', typeOnly: true },
      { from: 'http/proxy.ts', to: 'mcp/guard.ts', typeOnly: true },
      { from: 'mcp/policy/guard.ts', to: 'mcp/limits/guard.ts', typeOnly: true },
      { from: 'tracing/tracing.ts', to: 'auth/verify.ts', typeOnly: false },
      { from: 'http/proxy.ts', to: 'tracing/request-trace.ts', typeOnly: false },
      { from: 'http/proxy.ts', to: 'app.ts', typeOnly: true },
    ];
    for (const rule of RULES) expect(crossings.some(rule.broken), rule.name).toBe(true);
  });
});
