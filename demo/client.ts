// An MCP SDK client that sends the bearer token as Coder's user_oidc mode does.
// Usage: npx tsx demo/client.ts <sidecar MCP URL> <token>

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, token] = process.argv.slice(2);
if (!url || !token) {
  process.stderr.write('usage: npx tsx demo/client.ts <sidecar MCP URL> <token>\n');
  process.exit(2);
}
const client = new Client({ name: 'demo-client', version: '1.0.0' });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { authorization: `Bearer ${token}` } },
});
await client.connect(transport);
const { tools } = await client.listTools();
process.stdout.write(`tools: ${tools.map((t) => t.name).join(', ')}\n`);
const result = await client.callTool({ name: 'whoami', arguments: {} });
const [first] = result.content as { type: string; text?: string }[];
process.stdout.write(`whoami: ${first?.text ?? JSON.stringify(result)}\n`);
await client.close();
