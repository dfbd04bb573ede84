// Two sidecars as two replicas of the pod would run them, sharing limits through one Redis, and
// the TypeScript SDK clients connected to them: the set-up of the Redis tests.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { TestIssuer } from './issuer.js';
import { captureLog, type CapturedLog } from './log-capture.js';
import { startSidecar, testEnv, type RunningSidecar } from './sidecar.js';

export interface Replicas {
  /** The running sidecars, their logs and the clients connected, in start order; emptied by close(). */
  readonly sidecars: RunningSidecar[];
  readonly logs: CapturedLog[];
  readonly clients: Client[];
  /** Two sidecars in front of `upstream`, each with `env` over LOG_LEVEL=info. */
  start(issuer: TestIssuer, upstream: { url: string }, env: Record<string, string>): Promise<void>;
  /** A client of `sidecar` with a token of `claims`, initialized. */
  connect(issuer: TestIssuer, sidecar: RunningSidecar, claims: Record<string, unknown>): Promise<Client>;
  close(): Promise<void>;
}

export function replicas(clientName: string): Replicas {
  const sidecars: RunningSidecar[] = [];
  const logs: CapturedLog[] = [];
  const clients: Client[] = [];
  return {
    sidecars,
    logs,
    clients,
    async start(issuer, upstream, env) {
      for (let i = 0; i < 2; i++) {
        const log = captureLog();
        logs.push(log);
        sidecars.push(await startSidecar(testEnv(issuer, upstream, { LOG_LEVEL: 'info', ...env }), { logger: log.logger }));
      }
    },
    async connect(issuer, sidecar, claims) {
      const client = new Client({ name: clientName, version: '1.0.0' });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), {
          requestInit: { headers: { authorization: `Bearer ${await issuer.mint(claims)}` } },
        }),
      );
      clients.push(client);
      return client;
    },
    async close() {
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all(sidecars.map((s) => s.close()));
      clients.length = 0;
      sidecars.length = 0;
      logs.length = 0;
    },
  };
}
