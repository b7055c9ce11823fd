-- bench/soak.py's misbehaving load: requests that answer, trap, overflow
-- the stack and sleep, in turn.
local paths = { "/", "/trap", "/overflow", "/sleep/20", "/count", "/trap-after-head" }
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
