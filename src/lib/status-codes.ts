// Node's reason phrases, required rather than imported: on Node 24 an ESM import of a value from
// node:http loads Node's bundled undici (3 MB of heap; see undici.ts and test/integration/memory.test.ts).

import { createRequire } from 'node:module';

export const STATUS_CODES = (createRequire(import.meta.url)('node:http') as typeof import('node:http')).STATUS_CODES;
