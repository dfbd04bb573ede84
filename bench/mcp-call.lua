-- wrk: tools/call POSTs with a 1 KB body, a new JSON-RPC id each (headers from -H kept).
local i = 0
local filler = string.rep("a", 900)
local headers = {}
-- args[1]: the Content-Type (default application/json; text/plain: a body the sidecar does not read).
init = function(args)
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["Content-Type"] = args[1] or "application/json"
  headers["Accept"] = "application/json, text/event-stream"
end
request = function()
  i = i + 1
  local body = '{"jsonrpc":"2.0","id":' .. i .. ',"method":"tools/call","params":{"name":"query","arguments":{"table":"alpha_orders","sql":"' .. filler .. '","limit":100}}}'
  return wrk.format("POST", nil, headers, body)
end
