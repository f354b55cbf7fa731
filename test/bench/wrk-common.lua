-- Shared by the wrk scripts of the benchmarks (loaded with dofile; test/bench/wrk.ts sets WRK_COMMON
-- to this file): thread i sends to target i of WRK_TARGETS ("host:port,…", one thread per target)
-- and knows its number as `tid`; done() prints the one JSON line wrk.ts reads.

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

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"p50Us":%d,"p99Us":%d,"maxUs":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
