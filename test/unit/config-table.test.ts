import { describe, expect, it } from 'vitest';
import { helpText, loadConfig, VARIABLES } from '../../src/config/config.js';
import { INVALID, type Field } from '../../src/config/kinds.js';

const minimal = { OIDC_ISSUER: 'https://auth.example.com/realms/coder', OIDC_ALLOWED_AZP: 'coder' };

function parseAlone(text: string, name: string) {
  const problems: string[] = [];
  const field: Field = {
    name,
    text,
    expected: (what) => (problems.push(what), INVALID),
    problem: (message) => (problems.push(message), INVALID),
  };
  const row = VARIABLES.find((v) => v.name === name)!;
  return { value: row.kind.parse(text, field), problems };
}

describe('the configuration table', () => {
  it('names each variable and each Config key once', () => {
    expect(new Set(VARIABLES.map((v) => v.name)).size).toBe(VARIABLES.length);
    expect(new Set(VARIABLES.map((v) => v.key)).size).toBe(VARIABLES.length);
    expect(Object.keys(loadConfig(minimal)).sort()).toEqual(VARIABLES.map((v) => v.key).sort());
  });

  it('writes each default once: the loaded value is the row default, parsed by its kind', () => {
    const config: Record<string, unknown> = loadConfig(minimal);
    for (const row of VARIABLES) {
      if (typeof row.default === 'string') {
        const { value, problems } = parseAlone(row.default, row.name);
        expect(problems, row.name).toEqual([]);
        expect(config[row.key], row.name).toEqual(value);
      } else if (row.default === undefined && !('required' in row)) {
        // No default: the kind says what an unset variable is.
        expect(row.kind.unset, `${row.name} needs a default, required or an optional kind`).toBeDefined();
        if (!(row.name in minimal)) expect(config[row.key], row.name).toEqual(row.kind.unset!());
      }
    }
  });

  it('means what it shows: setting every variable to its shown default changes nothing', () => {
    const explicit: Record<string, string> = { ...minimal };
    for (const row of VARIABLES) if (typeof row.default === 'string') explicit[row.name] = row.default;
    expect(loadConfig(explicit)).toEqual(loadConfig(minimal));
    expect(loadConfig(minimal).resourceUrl).toBe('http://localhost:8080');
    expect(loadConfig({ ...minimal, PORT: '8443', TLS_CERT_FILE: '/c', TLS_KEY_FILE: '/k' }).resourceUrl).toBe('https://localhost:8443');
  });

  it('--help lists every row with its default', () => {
    const help = helpText().split('\n');
    for (const row of VARIABLES) {
      const line = help.find((l) => l.startsWith(`  ${row.name} `));
      expect(line, row.name).toBeDefined();
      if (typeof row.default === 'string') expect(line, row.name).toContain(`(default: ${row.default})`);
      expect(line, row.name).not.toContain('`');
    }
  });

  it('never shows a secret value in a message', () => {
    const secrets = VARIABLES.filter((v) => v.kind.secret !== undefined);
    expect(secrets.map((v) => v.name)).toContain('REDIS_URL');
    for (const row of secrets) {
      let message = '';
      try {
        loadConfig({ ...minimal, [row.name]: 'not a value:s3cret@' });
      } catch (error) {
        message = String(error);
      }
      expect(message, row.name).toContain(row.name);
      expect(message, row.name).not.toContain('s3cret');
    }
  });
});
