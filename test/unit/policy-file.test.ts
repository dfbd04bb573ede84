import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runPolicyCommand } from '../../src/mcp/policy/cli.js';
import { parsePolicy } from '../../src/mcp/policy/file.js';

// The policy file and the offline CLI: `policy check` names line and column of every problem,
// `policy explain` shows the decision and the rule for the seed's case (examples/policy/datastore.yaml).

const EXAMPLE = 'examples/policy/datastore.yaml';
const dir = mkdtempSync(join(tmpdir(), 'policy-file-'));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
const alice = file('alice.json', JSON.stringify({ preferred_username: 'alice', sub: 'u-alice', groups: ['/alpha'] }));
const bob = file(
  'bob.json',
  JSON.stringify({ preferred_username: 'bob', sub: 'u-bob', groups: ['/bravo'], realm_access: { roles: ['reader'] } }),
);

function run(...argv: string[]): { code: number; out: string; err: string } {
  let out = '';
  let err = '';
  const code = runPolicyCommand(argv, { out: (t) => void (out += `${t}\n`), err: (t) => void (err += `${t}\n`) });
  return { code, out, err };
}

describe("policy explain on the example (the seed's case)", () => {
  it.each([
    [
      '/alpha queries an alpha_ table',
      alice,
      ['--tool', 'query', '--arguments', '{"table":"alpha_orders"}'],
      'allow',
      'alpha-queries-alpha-tables',
    ],
    ['/alpha queries a bravo_ table', alice, ['--tool', 'query', '--arguments', '{"table":"bravo_orders"}'], 'deny', '(none)'],
    ['/alpha queries without a table', alice, ['--tool', 'query'], 'deny', '(none)'],
    [
      '/bravo calls a read-only tool',
      bob,
      ['--tool', 'list_tables', '--annotations', '{"readOnlyHint":true}'],
      'allow',
      'bravo-read-only-tools',
    ],
    [
      '/bravo calls a tool not marked read-only',
      bob,
      ['--tool', 'update_row', '--annotations', '{"readOnlyHint":false}'],
      'deny',
      '(none)',
    ],
    [
      '/bravo calls drop_table even if it were marked read-only',
      bob,
      ['--tool', 'drop_table', '--annotations', '{"readOnlyHint":true}'],
      'deny',
      'nobody-drops-tables',
    ],
    ['/alpha calls drop_table', alice, ['--tool', 'drop_table', '--arguments', '{"table":"alpha_orders"}'], 'deny', 'nobody-drops-tables'],
  ])('%s', (_what, claims, extra, decision, rule) => {
    const { code, out } = run('explain', EXAMPLE, '--claims', claims, '--method', 'tools/call', ...extra);
    expect(out.split('\n')[0]).toMatch(new RegExp(`^${decision}: `));
    expect(out).toContain(`rule: ${rule}\n`);
    expect(code).toBe(decision === 'allow' ? 0 : 3);
  });

  it('says whether the tool is listed to the user: query is listed to /alpha (arguments judged at the call), drop_table to nobody', () => {
    expect(run('explain', EXAMPLE, '--claims', alice, '--method', 'tools/call', '--tool', 'query').out).toContain(
      'listed in tools/list: yes',
    );
    expect(run('explain', EXAMPLE, '--claims', alice, '--method', 'tools/call', '--tool', 'list_tables').out).toContain(
      'listed in tools/list: no',
    );
    expect(
      run('explain', EXAMPLE, '--claims', bob, '--method', 'tools/call', '--tool', 'drop_table', '--annotations', '{"readOnlyHint":true}')
        .out,
    ).toContain('listed in tools/list: no');
  });

  it('lets plumbing pass: initialize is allowed with no rule naming it', () => {
    const { code, out } = run('explain', EXAMPLE, '--claims', alice, '--method', 'initialize');
    expect([code, out.split('\n')[0]]).toEqual([0, 'allow: initialize passes unless a deny rule matches']);
  });

  it('runs as mcp-auth-sidecar policy explain (main.ts dispatches it)', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [
      '--import',
      'tsx',
      'src/main.ts',
      'policy',
      'explain',
      EXAMPLE,
      '--claims',
      alice,
      '--method',
      'tools/call',
      '--tool',
      'query',
      '--arguments',
      '{"table":"alpha_orders"}',
    ]);
    expect(stdout).toContain('allow: allow rule "alpha-queries-alpha-tables" matches');
  });
});

describe('policy check', () => {
  it('accepts the example', () => {
    expect(run('check', EXAMPLE)).toEqual({ code: 0, out: `${EXAMPLE}: valid, 3 rules (2 allow, 1 deny)\n`, err: '' });
  });

  it('names line and column of every problem, CEL errors inside a folded block included', () => {
    const bad = file(
      'bad.yaml',
      [
        'rules:',
        '  - name: a',
        '    effect: allow',
        '    when: >-',
        '      "/alpha" in groups &&',
        '      mcp.tol == "x"',
        '  - name: a',
        '    effect: permit',
        '    when: mcp.tool == 1',
        '  - name: c',
        '    effect: deny',
        '    when: "mcp.tool == \'x\' &&"',
        '  - name: d',
        '    effect: deny',
        '    when: mcp.tool == "x" && nosuch(1) && user == "u"',
        '  - name: e',
        '    effect: deny',
        '    when: undeclared == 1',
        'limitz: {}',
        '',
      ].join('\n'),
    );
    const { code, err } = run('check', bad);
    expect(code).toBe(1);
    expect(err.trim().split('\n')).toEqual([
      `${bad}:6:10: rule "a": mcp has no field tol: it has method, tool, arguments, prompt, resource`,
      `${bad}:7:11: rule name "a" is used twice (first on line 2): names must be unique`,
      `${bad}:8:13: effect must be allow or deny, not "permit"`,
      `${bad}:9:20: rule "a": mcp.tool is a string, compared with int 1`,
      `${bad}:12:28: rule "c": syntax error: found & but expecting end of input`,
      `${bad}:15:30: rule "d": unknown function nosuch`,
      `${bad}:18:11: rule "e": undeclared name undeclared: rules see jwt, user, groups, roles, mcp.*, tool.annotations, token.iss, token.scopes, token.cnf`,
      `${bad}:19:1: unknown key "limitz": expected rules or limits`,
    ]);
  });

  it('refuses YAML errors with their position: duplicate keys, bad indentation', () => {
    const { code, err } = run('check', file('yaml.yaml', 'rules:\n  - name: a\n    name: b\n'));
    expect(code).toBe(1);
    expect(err).toContain(':3:5: Map keys must be unique');
  });

  it('keeps limits: for the rate limits, and a file without rules: is no tool policy', () => {
    const doc = parsePolicy('limits:\n  perUser: { points: 10, durationSeconds: 1 }\n');
    expect(doc).toEqual({ rules: undefined, limits: { perUser: { points: 10, durationSeconds: 1 } } });
    expect(parsePolicy('rules: []\n').rules).toEqual([]);
  });
});
