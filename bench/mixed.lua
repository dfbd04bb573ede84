-- wrk: mixed traffic. Six in ten requests carry a token not seen before (cycling through the
-- file), two reuse one token, one has no token, one a bad signature.
local fresh = {}
local i = 0
local reused, bad
init = function(args)
  for line in io.lines(args[1]) do fresh[#fresh + 1] = line end
  reused = fresh[1]
  bad = string.sub(fresh[2], 1, -9) .. "AAAAAAAA"
end
request = function()
  i = i + 1
  local kind = i % 10
  local headers = {}
  if kind < 6 then
    headers["Authorization"] = "Bearer " .. fresh[(i % #fresh) + 1]
  elseif kind < 8 then
    headers["Authorization"] = "Bearer " .. reused
  elseif kind == 9 then
    headers["Authorization"] = "Bearer " .. bad
  end
  return wrk.format("GET", "/mcp", headers)
end
