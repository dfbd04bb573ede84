import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { runGoClient, startGoServer, useGo, type GoServer } from '../helpers/go.js';
import { POLICY_DENIED_CODE } from '../../src/mcp/policy/guard.js';

// examples/policy/datastore.yaml in front of the go-sdk server (test/go: query and sleep marked
// readOnlyHint, drop_table destructiveHint), with the TypeScript client and the go-sdk and
// mcp-go clients: what each shows of a denial.
const go = useGo();

describe.skipIf(!go)('tool policy in front of the go-sdk server', () => {
  let issuer: TestIssuer;
  let server: GoServer;
  let sidecar: RunningSidecar;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    tokens.alice = await issuer.mint({ preferred_username: 'alice', sub: 'u-alice', groups: ['/alpha'] });
    tokens.bob = await issuer.mint({ preferred_username: 'bob', sub: 'u-bob', groups: ['/bravo'] });
    server = await startGoServer();
    sidecar = await startSidecar(testEnv(issuer, { url: server.origin }, { POLICY_FILE: 'examples/policy/datastore.yaml' }));
  });
  afterAll(async () => {
    await sidecar?.close();
    await server?.close();
    await issuer?.close();
  });

  async function connect(who: string): Promise<Client> {
    const client = new Client({ name: 'policy-go-test', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${sidecar.url}/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${tokens[who]}` } },
      }),
    );
    return client;
  }

  it("lists by the Go server's annotations: /bravo sees the read-only tools, /alpha only query, nobody drop_table", async () => {
    const bob = await connect('bob');
    const alice = await connect('alice');
    try {
      const bobs = (await bob.listTools()).tools.map((t) => t.name);
      expect(bobs).toContain('query');
      expect(bobs).not.toContain('drop_table');
      expect((await alice.listTools()).tools.map((t) => t.name)).toEqual(['query']);
      expect(await bob.callTool({ name: 'query', arguments: { sql: 'select 1' } })).not.toHaveProperty('isError', true);
      const denied = await bob.callTool({ name: 'drop_table', arguments: {} }).catch((e: unknown) => e);
      expect((denied as McpError).code).toBe(POLICY_DENIED_CODE);
    } finally {
      await bob.close();
      await alice.close();
    }
  });

  it.each(['gosdk', 'mcpgo'] as const)(
    'the %s client gets the denial as an error naming the tool and the policy, and a read-only call works',
    async (kind) => {
      const denied = await runGoClient(kind, `${sidecar.url}/mcp`, tokens.alice);
      expect(denied.code).toBe(1);
      expect(denied.stderr).toContain('Forbidden: tools/call of "whoami" is not allowed by the tool policy');
      const allowed = await runGoClient(kind, `${sidecar.url}/mcp`, tokens.bob);
      expect(allowed.code).toBe(0);
      expect((allowed.result as { tools: string[] }).tools).not.toContain('drop_table');
    },
  );
});
