-- wrk script of the TTL renewal benchmark (test/bench/ttl-renew.ts --client wrk): thread i sends to
-- server i of WRK_TARGETS ("host:port,host:port,…", one thread per server), paths spread over
-- RENEW_CHECKS checks like the undici client's; done() prints one JSON line.

local checks = tonumber(os.getenv("RENEW_CHECKS") or "1000")
local targets = {}
local threads = 0

function setup(thread)
  if #targets == 0 then
    for hp in string.gmatch(os.getenv("WRK_TARGETS"), "[^,]+") do
      local host, port = hp:match("^(.+):(%d+)$")
      targets[#targets + 1] = wrk.lookup(host, port)[1]
    end
  end
  threads = threads + 1
  thread.addr = targets[((threads - 1) % #targets) + 1]
  thread:set("tid", threads)
end

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

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"p50Us":%d,"p99Us":%d,"maxUs":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
