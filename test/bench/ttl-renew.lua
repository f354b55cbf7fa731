-- wrk script of the TTL renewal benchmark (test/bench/ttl-renew.ts --client wrk): thread i sends to
-- server i (wrk-common.lua), paths spread over RENEW_CHECKS checks like the undici client's.

dofile(os.getenv("WRK_COMMON"))

local checks = tonumber(os.getenv("RENEW_CHECKS") or "1000")
local n = 0
local step = 104729

-- RENEW_THINK_MS > 0: each connection waits that long after an answer before its next request (a
-- closed loop with think time: the offered rate is about connections / (think + latency)).
local think = tonumber(os.getenv("RENEW_THINK_MS") or "0")
if think > 0 then
  function delay()
    return think
  end
end

function init(args)
  n = (tid or 1) * 7919
end

function request()
  n = (n + step) % checks
  return wrk.format("PUT", "/v1/agent/check/pass/ttl-" .. n)
end
