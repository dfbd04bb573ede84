import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPolicyCommand } from '../../src/mcp/policy/cli.js';

// `mcp-auth-sidecar policy check|explain|test`: what it prints and its exit codes.

function run(...argv: string[]): { code: number; out: string; err: string } {
  let out = '';
  let err = '';
  const code = runPolicyCommand(argv, { out: (text) => (out += `${text}\n`), err: (text) => (err += `${text}\n`) });
  return { code, out, err };
}

const dir = mkdtempSync(join(tmpdir(), 'policy-command-'));
const write = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

const EXAMPLES = 'examples/policy';

describe('policy test', () => {
  it('passes every shipped case file against its policy (exit 0)', () => {
    const cases = readdirSync(EXAMPLES).filter((f) => f.endsWith('.cases.yaml'));
    expect(cases.length).toBeGreaterThan(0);
    for (const file of cases) {
      const result = run('test', join(EXAMPLES, file.replace('.cases.yaml', '.yaml')), join(EXAMPLES, file));
      expect(result.code, result.out).toBe(0);
      expect(result.out).toMatch(/^\d+ passed, 0 failed$/m);
    }
  });

  it('exits 4 and names each case that misses, with what it got', () => {
    const cases = write(
      'miss.cases.yaml',
      `claims:
  alice: { preferred_username: alice, groups: ["/alpha"] }
cases:
  - name: alice drops a table
    claims: alice
    method: tools/call
    tool: drop_table
    expect: allow
  - name: alice queries alpha, decided by the wrong rule
    claims: alice
    method: tools/call
    tool: query
    arguments: { table: alpha_x }
    expect: allow
    rule: bravo-read-only-tools
  - name: ping passes
    claims: { preferred_username: carol }
    method: ping
    expect: allow
`,
    );
    const result = run('test', `${EXAMPLES}/datastore.yaml`, cases);
    expect(result.code).toBe(4);
    expect(result.out).toContain('FAIL alice drops a table: expected allow, got deny (rule: nobody-drops-tables)');
    expect(result.out).toContain(
      'FAIL alice queries alpha, decided by the wrong rule: expected allow (rule: bravo-read-only-tools), got allow (rule: alpha-queries-alpha-tables)',
    );
    expect(result.out).toContain('ok   ping passes');
    expect(result.out).toContain('1 passed, 2 failed');
  });

  it('reports every problem of a cases file at once (exit 2)', () => {
    const cases = write('bad.cases.yaml', 'cases:\n  - name: one\n    claims: nobody\n    expect: maybe\n  - 7\n');
    const result = run('test', `${EXAMPLES}/datastore.yaml`, cases);
    expect(result.code).toBe(2);
    expect(result.err).toContain('one: claims must name a claim set');
    expect(result.err).toContain('one: method is required');
    expect(result.err).toContain('one: expect must be one of allow, deny, listed, hidden');
    expect(result.err).toContain('case 2: expected a mapping');
  });
});

describe('policy check', () => {
  it('passes every shipped policy without a warning, also against the shipped tools/list', () => {
    for (const file of readdirSync(EXAMPLES).filter((f) => f.endsWith('.yaml') && !f.endsWith('.cases.yaml'))) {
      const result = run('check', join(EXAMPLES, file), '--tools', `${EXAMPLES}/tools-list.json`);
      expect(result.code).toBe(0);
      expect(result.out).not.toContain('warning');
    }
  });

  it('warns, with the line, on a group without its leading slash, an unknown method and a tool the server does not list', () => {
    const policy = write(
      'mistakes.yaml',
      `rules:
  - name: alpha
    effect: allow
    when: '"alpha" in groups && mcp.method == "tools/call"'
  - name: typo
    effect: allow
    when: mcp.method == "tool/call" && mcp.tool == "qeury"
`,
    );
    const result = run('check', policy, '--tools', `${EXAMPLES}/tools-list.json`);
    expect(result.code).toBe(0);
    expect(result.out).toContain(`${policy}:2: warning: rule "alpha": group "alpha" has no leading "/"`);
    expect(result.out).toContain(`${policy}:5: warning: rule "typo": "tool/call" is not an MCP method`);
    expect(result.out).toContain(`${policy}:5: warning: rule "typo": tool "qeury" is not in the given tools/list`);
    expect(run('check', policy).out).not.toContain('qeury');
  });

  it('reports every error with its position (exit 1)', () => {
    const policy = write(
      'broken.yaml',
      'rules:\n  - name: a\n    effect: maybe\n    when: "true"\n  - name: b\n    effect: allow\n    when: mcp.nope ==\n',
    );
    const result = run('check', policy);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/broken\.yaml:3:\d+: effect must be allow or deny/);
    expect(result.err).toMatch(/broken\.yaml:7:\d+: rule "b"/);
  });
});

describe('policy explain', () => {
  it('shows what a user sees and may call of a tools/list, rule by rule', () => {
    const result = run(
      'explain',
      `${EXAMPLES}/datastore.yaml`,
      '--claims',
      `${EXAMPLES}/claims/bob.json`,
      '--tools',
      `${EXAMPLES}/tools-list.json`,
    );
    expect(result.code).toBe(0);
    expect(result.out).toContain('user: bob');
    expect(result.out).toContain('echo: listed (bravo-read-only-tools); a call without arguments: allow (bravo-read-only-tools)');
    expect(result.out).toContain('drop_table: hidden (nobody-drops-tables); a call without arguments: deny (nobody-drops-tables)');
  });

  it('explains one call and exits 3 when it is denied', () => {
    const result = run(
      'explain',
      `${EXAMPLES}/datastore.yaml`,
      '--claims',
      `${EXAMPLES}/claims/alice.json`,
      '--method',
      'tools/call',
      '--tool',
      'query',
      '--arguments',
      '{"table":"bravo_orders"}',
    );
    expect(result.code).toBe(3);
    expect(result.out).toContain('deny: ');
    expect(result.out).toContain('listed in tools/list: yes');
  });

  it('shows which scopes a call needs, and when a call is refused for scopes alone', () => {
    const policy = write(
      'scoped.yaml',
      `rules:
  - name: alpha-drops-with-write
    effect: allow
    when: '"/alpha" in groups && mcp.tool == "drop"'
    scopes: [datastore.write]
`,
    );
    const claims = (scope: string) =>
      write(
        `claims-${scope.length}.json`,
        JSON.stringify({ iss: 'https://idp/realms/a', preferred_username: 'alice', groups: ['/alpha'], scope }),
      );
    const denied = run('explain', policy, '--claims', claims('openid'), '--method', 'tools/call', '--tool', 'drop');
    expect(denied.code).toBe(3);
    expect(denied.out).toContain('deny: allow rule "alpha-drops-with-write" matches but the token lacks the scope datastore.write');
    expect(denied.out).toContain('scopes needed: datastore.write (refused for scopes alone: 403 insufficient_scope, a client can step up)');
    expect(denied.out).toContain('token: iss "https://idp/realms/a"  scopes: ["openid"]');
    expect(denied.out).toContain('allow alpha-drops-with-write: true (needs scopes datastore.write)');
    const allowed = run('explain', policy, '--claims', claims('openid datastore.write'), '--method', 'tools/call', '--tool', 'drop');
    expect(allowed.code).toBe(0);
    expect(allowed.out).toContain('scopes needed: datastore.write\n');
  });

  it('names what it needs (exit 2)', () => {
    const result = run('explain', `${EXAMPLES}/datastore.yaml`, '--claims', `${EXAMPLES}/claims/alice.json`);
    expect(result.code).toBe(2);
    expect(result.err).toContain('policy explain needs --claims, and --method or --tools');
  });
});
