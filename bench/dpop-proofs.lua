-- wrk: GET /mcp with one DPoP-bound token and a new proof on every request, the proofs read from
-- the file given after -- (line 1: the token; then one proof a line, each used once: a proof sent
-- twice is a replay, refused). One thread (lib.ts runs wrk with -t1), so no two requests share one.
local token
local proofs = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do
    if token == nil then token = line else proofs[#proofs + 1] = line end
  end
end
request = function()
  i = i + 1
  return wrk.format("GET", "/mcp", { ["Authorization"] = "DPoP " .. token, ["DPoP"] = proofs[i] or "exhausted" })
end
