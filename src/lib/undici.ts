// undici's two dispatchers that the sidecar uses, loaded from their own files and not through
// undici's index: the index loads all of undici (fetch, WebSocket, caches, mocks) and, through
// its cookie helpers touching globalThis.Headers, Node's own bundled copy of undici as well.
// That is 3 MB of heap and about 5 MB of resident memory held for code that never runs
// (bench/RESULTS.md). On Node 24 an ESM import of a value from node:http loads Node's undici too
// (the module's lazy WebSocket export is read): the sidecar imports none, Fastify requires it.
// The types are undici's own; test/integration/memory.test.ts fails if either undici is loaded again, and
// every test that starts the sidecar fails if a new undici moves these files.

import { createRequire } from 'node:module';
import type { Agent as AgentClass, Pool as PoolClass } from 'undici';

const require = createRequire(import.meta.url);

export const Pool = require('undici/lib/dispatcher/pool.js') as typeof PoolClass;
export const Agent = require('undici/lib/dispatcher/agent.js') as typeof AgentClass;
