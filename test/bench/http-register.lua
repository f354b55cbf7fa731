-- wrk script of the registration benchmark (test/bench/http-register.ts --client wrk): thread i
-- sends to target i (wrk-common.lua); every request registers a new instance (IDs never repeat: the
-- warm-up run and each case use their own prefix, REG_PREFIX), with the same body as the undici
-- client's (http-read.ts registration()).

dofile(os.getenv("WRK_COMMON"))

local services = 256
local prefix = (os.getenv("REG_PREFIX") or "wrk") .. (os.getenv("WRK_WARMUP") == "1" and "w" or "m")
local n = 0
local headers = { ["Content-Type"] = "application/json" }

function request()
  n = n + 1
  local k = tid * 1000000 + n
  local body = string.format(
    '{"Name":"bench-reg-%d","ID":"%s-%d-%d","Address":"10.%d.%d.%d","Port":8080,"Tags":["v1","http"],"Meta":{"version":"1.2.3"},"Check":{"TTL":"10m"}}',
    k % services, prefix, tid, n, math.floor(k / 65536) % 256, math.floor(k / 256) % 256, k % 256)
  return wrk.format("PUT", "/v1/agent/service/register", headers, body)
end
