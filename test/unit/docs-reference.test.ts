import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { VARIABLES, helpText } from '../../src/config/config.js';
import { REJECTIONS } from '../../src/lib/errors.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe("README, the users' reference", () => {
  it('starts with the demo and test commands', () => {
    const firstBlock = readme.slice(readme.indexOf('```'), readme.indexOf('```', readme.indexOf('```') + 3));
    expect(firstBlock).toContain('npm ci && npm run demo');
    expect(firstBlock).toContain('npm ci && npm test');
  });

  it('documents every configuration variable the code reads, and --help lists them', () => {
    for (const { name } of VARIABLES) {
      expect(readme, name).toContain(`\`${name}\``);
      expect(helpText(), name).toContain(name);
    }
  });

  it('lists every rejection reason with its status', () => {
    for (const [reason, { status }] of Object.entries(REJECTIONS)) {
      expect(readme).toMatch(new RegExp(`\\| \`${reason}\` \\| ${status} \\|`));
    }
  });
});
