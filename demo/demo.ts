// `npm run demo`: a local issuer, a sample MCP server and the sidecar in front of it,
// on the embedded defaults, all on 127.0.0.1. Prints a token and commands to try, then the
// sidecar's log lines (one per request). Ctrl-C, or SIGTERM to `npm run demo`, stops all three.

import { loadConfig } from '../src/config/config.js';
import { buildApp } from '../src/app.js';
import { startIssuer } from '../test/helpers/issuer.js';
import { startMcpServer } from '../test/helpers/mcp-server.js';
import { freePort } from '../test/helpers/tools.js';

const env = process.env;
const issuer = await startIssuer();
await issuer.addKey('RS256', { kid: 'demo-key' });
// Stateless with JSON responses, so a single curl can call a tool.
const mcp = await startMcpServer({ port: Number(env.DEMO_MCP_PORT ?? 8000), stateless: true, jsonResponse: true });

// The metadata must name the URL the demo prints, so the port is known before listening.
const port = env.PORT === '0' ? await freePort() : Number(env.PORT ?? 8080);
const config = loadConfig({
  ...env,
  PORT: String(port),
  HOST: '127.0.0.1',
  ADMIN_HOST: '127.0.0.1',
  RESOURCE_URL: `http://127.0.0.1:${port}`,
  OIDC_ISSUER: issuer.issuer,
  OIDC_ALLOWED_AZP: 'coder',
  UPSTREAM_URL: mcp.url,
});
const app = await buildApp(config);
const { proxyUrl, adminUrl } = await app.listen();

const nowSeconds = Math.floor(Date.now() / 1000);
const token = await issuer.mint({ exp: nowSeconds + 3600 });
const idToken = await issuer.mint({ typ: 'ID', exp: nowSeconds + 3600 });
const call = `'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'`;
const mcpHeaders = `-H 'content-type: application/json' -H 'accept: application/json, text/event-stream'`;

process.stdout.write(`
mcp-auth-sidecar demo
  issuer (local, generated RS256 key)  ${issuer.issuer}
  sample MCP server (no auth)          ${mcp.url}/mcp
  sidecar proxy                        ${proxyUrl}
  sidecar admin                        ${adminUrl}

A Keycloak-shaped access token for "alice" (azp=coder, typ=Bearer, valid 1 hour):
TOKEN=${token}

Accepted: the MCP server answers "you are alice"
  curl -s ${proxyUrl}/mcp ${mcpHeaders} -H "authorization: Bearer ${token}" -d ${call}

Accepted, with the MCP SDK client (initialize, tools/list, tools/call):
  npx tsx demo/client.ts ${proxyUrl}/mcp ${token}

Rejected: no token (401 missing_token), then an ID token (401 wrong_token_type)
  curl -si ${proxyUrl}/mcp ${mcpHeaders} -d ${call}
  curl -si ${proxyUrl}/mcp ${mcpHeaders} -H "authorization: Bearer ${idToken}" -d ${call}

Metrics, readiness and the RFC 9728 metadata:
  curl -s ${adminUrl}/metrics | grep ^mcp_auth_
  curl -s ${adminUrl}/readyz
  curl -s ${proxyUrl}/.well-known/oauth-protected-resource

The sidecar's log follows: one JSON line per request ("msg":"request", with decision and reason).
Ctrl-C stops the demo.
`);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1);
    stopping = true;
    void Promise.all([app.close(), mcp.close(), issuer.close()]).then(() => process.exit(0));
  });
}
