// npm run docs: writes the configuration table into docs/configuration.md from the table in
// src/config/variables.ts (test/unit/docs-reference.test.ts fails when the page is stale).
import { readFileSync, writeFileSync } from 'node:fs';
import { withReferenceTable } from '../src/config/reference.js';

const page = new URL('../docs/configuration.md', import.meta.url);
const before = readFileSync(page, 'utf8');
const after = withReferenceTable(before);
if (after !== before) writeFileSync(page, after);
process.stdout.write(`docs/configuration.md: ${after === before ? 'up to date' : 'configuration table written'}\n`);
