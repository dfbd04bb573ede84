import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startIssuer, type TestIssuer } from '../helpers/issuer.js';
import { startSidecar, testEnv, type RunningSidecar } from '../helpers/sidecar.js';
import { startEverythingServer, useGo, type GoServer } from '../helpers/go.js';
import { regressions, runConformance, useConformance, type ConformanceRun } from '../helpers/conformance.js';
import { startBearerProxy, type BearerProxy } from '../helpers/bearer-proxy.js';
import { freePort } from '../helpers/tools.js';

// The official MCP conformance suite's 2026-07-28 server scenarios (pending ones too) against
// go-sdk's everything-server: run directly, then through the sidecar, without a policy and with
// one whose rules name methods and tools as operators write them. Every check that passes
// directly passes through the sidecar. The suite sends no token: a loopback proxy adds one, and
// passes Host and Origin on as the suite sent them (its DNS-rebinding scenario), so the
// sidecar's ALLOWED_ORIGINS lists that proxy's own origin.
const go = useGo();
const suite = useConformance();

const POLICY = `rules:
  - name: conformance-tools
    effect: allow
    when: mcp.method == "tools/call" && (mcp.tool.startsWith("test_") || mcp.tool == "json_schema_2020_12_tool")
  - name: conformance-prompts
    effect: allow
    when: mcp.method == "prompts/get" && mcp.prompt.startsWith("test_")
  - name: conformance-resources
    effect: allow
    when: mcp.method == "resources/read" && mcp.resource.startsWith("test://")
  - name: completions
    effect: allow
    when: mcp.method == "completion/complete"
  - name: nobody-reconnects
    effect: deny
    when: mcp.method == "tools/call" && mcp.tool == "test_reconnection"
`;

describe.skipIf(!go || !suite)('the MCP conformance suite, 2026-07-28 server scenarios, through the sidecar', () => {
  let issuer: TestIssuer;
  let server: GoServer;
  let direct: ConformanceRun;
  const dir = mkdtempSync(join(tmpdir(), 'conformance-policy-'));
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, POLICY);

  beforeAll(async () => {
    issuer = await startIssuer();
    await issuer.addKey();
    server = await startEverythingServer();
    direct = await runConformance(suite!, server.url);
  }, 150_000);
  afterAll(async () => {
    await server?.close();
    await issuer?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A sidecar in front of the server, and the token-adding proxy in front of it; the suite's result. */
  async function throughSidecar(env: Record<string, string>): Promise<ConformanceRun> {
    const port = await freePort();
    let sidecar: RunningSidecar | undefined;
    let proxy: BearerProxy | undefined;
    try {
      sidecar = await startSidecar(testEnv(issuer, { url: server.origin }, { ALLOWED_ORIGINS: `http://127.0.0.1:${port}`, ...env }));
      const token = await issuer.mint({ exp: Math.floor(Date.now() / 1000) + 600 });
      proxy = await startBearerProxy(sidecar.url, token, port);
      return await runConformance(suite!, `${proxy.url}/mcp`);
    } finally {
      await proxy?.close();
      await sidecar?.close();
    }
  }

  it('passes every scenario directly (the reference the sidecar is held to)', () => {
    expect(Object.keys(direct)).toContain('server-stateless');
    expect(Object.keys(direct)).toContain('http-header-validation');
    expect(regressions(direct, direct)).toEqual([]);
    const failed = Object.entries(direct).flatMap(([s, checks]) =>
      Object.entries(checks)
        .filter(([, c]) => c.status === 'FAILURE')
        .map(([c]) => `${s} / ${c}`),
    );
    expect(failed).toEqual([]);
  });

  it('passes through the sidecar every check that passes directly, without a policy', async () => {
    expect(regressions(direct, await throughSidecar({}))).toEqual([]);
  }, 150_000);

  it('passes through the sidecar every check that passes directly, with a policy naming methods and tools', async () => {
    expect(regressions(direct, await throughSidecar({ POLICY_FILE: policyFile }))).toEqual([]);
  }, 150_000);
});
