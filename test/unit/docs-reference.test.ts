import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { VARIABLES, helpText } from '../../src/config/config.js';
import { referenceTable, withReferenceTable } from '../../src/config/reference.js';
import { REJECTIONS } from '../../src/lib/errors.js';

const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');
const readme = read('README.md');
const configuration = read('docs/configuration.md');
const pages = ['README.md', ...readdirSync(new URL('docs/', root)).map((name) => `docs/${name}`)];

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes. */
const anchor = (heading: string) =>
  heading
    .toLowerCase()
    .replace(/[^a-z0-9 -]/g, '')
    .replaceAll(' ', '-');

function anchors(markdown: string): Set<string> {
  const found = new Set<string>();
  let fence = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fence = !fence;
    else if (!fence && /^#{1,6} /.test(line)) found.add(anchor(line.replace(/^#+ /, '')));
  }
  return found;
}

describe("README, the users' front page", () => {
  it('starts with the demo and test commands', () => {
    const firstBlock = readme.slice(readme.indexOf('```'), readme.indexOf('```', readme.indexOf('```') + 3));
    expect(firstBlock).toContain('npm ci && npm run demo');
    expect(firstBlock).toContain('npm ci && npm test');
  });

  it('links to every page under docs/', () => {
    for (const page of pages.filter((p) => p.startsWith('docs/'))) expect(readme, page).toContain(`](${page})`);
  });
});

describe('docs/, the reference', () => {
  it('documents every configuration variable the code reads, and --help lists them', () => {
    for (const { name } of VARIABLES) {
      expect(configuration, name).toContain(`\`${name}\``);
      expect(helpText(), name).toContain(name);
    }
  });

  it('holds the configuration table as the code generates it (npm run docs rewrites it)', () => {
    expect(configuration).toContain(referenceTable());
    expect(withReferenceTable(configuration)).toBe(configuration);
    const stale = configuration.replace('| `PORT` | `8080` |', '| `PORT` | `8081` |');
    expect(withReferenceTable(stale)).toBe(configuration);
  });

  it('lists every rejection reason with its status', () => {
    const security = read('docs/security.md');
    for (const [reason, { status }] of Object.entries(REJECTIONS)) {
      expect(security).toMatch(new RegExp(`\\| \`${reason}\` \\| ${status} \\|`));
    }
  });

  it('links only to files and headings that exist', () => {
    for (const page of pages) {
      const text = read(page).replace(/```[\s\S]*?```/g, '');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue;
        const [path, hash] = target!.split('#');
        const file = path === '' ? page : new URL(path!, new URL(page, root)).pathname.slice(new URL(root).pathname.length);
        expect(existsSync(new URL(file, root)), `${page} → ${target}`).toBe(true);
        if (hash !== undefined) expect([...anchors(read(file))], `${page} → ${target}`).toContain(hash);
      }
    }
  });
});
