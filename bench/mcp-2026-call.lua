-- wrk: MCP 2026-07-28 tools/call POSTs with a 1 KB body, a new JSON-RPC id each (headers from -H
-- kept): the MCP-Protocol-Version, Mcp-Method and Mcp-Name headers, and _meta with the version,
-- the client and its capabilities, as a 2026-07-28 client sends them.
local i = 0
local filler = string.rep("a", 800)
local headers = {}
-- args[1]: the Content-Type (default application/json; text/plain: a body the sidecar does not read).
init = function(args)
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["Content-Type"] = args[1] or "application/json"
  headers["Accept"] = "application/json, text/event-stream"
  headers["MCP-Protocol-Version"] = "2026-07-28"
  headers["Mcp-Method"] = "tools/call"
  headers["Mcp-Name"] = "query"
end
request = function()
  i = i + 1
  local body = '{"jsonrpc":"2.0","id":' .. i .. ',"method":"tools/call","params":{"name":"query","arguments":{"table":"alpha_orders","sql":"' .. filler .. '","limit":100},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1.0.0"},"io.modelcontextprotocol/clientCapabilities":{}}}}'
  return wrk.format("POST", nil, headers, body)
end
