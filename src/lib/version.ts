// The package version, read once from package.json: it sits beside src/ and dist/ alike
// (the image copies it to /app), so the tests and the built sidecar report the same.

import { readFileSync } from 'node:fs';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;
