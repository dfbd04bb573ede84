-- wrk: a different token on every request, read from the file given after --.
local tokens = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
end
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", "/mcp", { ["Authorization"] = "Bearer " .. tokens[i] })
end
