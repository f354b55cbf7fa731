-- Shared by the wrk scripts of the benchmarks (loaded with dofile; test/bench/wrk.ts sets WRK_COMMON
-- to this file): thread i sends to target i of WRK_TARGETS ("host:port,…", one thread per target)
-- and knows its number as `tid`; done() prints the one JSON line wrk.ts reads.
--
-- Latency: wrk 4.1 corrects its latency histogram for coordinated omission before done() sees it
-- (stats_correct: every latency n ≥ 2E adds samples at n − E, n − 2E, … while above E, with E =
-- duration / (requests / connections), the mean time between requests of one connection). Its
-- percentiles are then not those of the requests made. done() rebuilds the observed histogram by
-- undoing that step exactly (it reads wrk's histogram through the FFI: struct stats of wrk 4.1's
-- stats.h) and reports both; it checks that the rebuilt histogram holds exactly the recorded
-- requests, and reports an error instead of numbers when it does not.

local ffi = require("ffi")
ffi.cdef[[
typedef struct { uint64_t count; uint64_t limit; uint64_t min; uint64_t max; uint64_t data[?]; } wrk_stats;
]]

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

-- wrk 4.1's percentile (stats_percentile) over a histogram from observed().
local function percentile(h, p)
  local rank = math.floor(p / 100 * h.count + 1)
  local total = 0
  for i = h.lo, h.hi do
    total = total + (h.counts[i] or 0)
    if total >= rank then return i end
  end
  return 0
end

-- The observed histogram under wrk's corrected one — {counts = µs → requests, lo, hi, count} — or
-- nil and why not.
local function observed(latency, summary)
  local connections = tonumber(os.getenv("WRK_CONNECTIONS") or "") or 0
  if connections <= 0 then return nil, "WRK_CONNECTIONS is not set" end
  local s = ffi.cast("wrk_stats**", latency)[0]
  local lo, hi = tonumber(s.min), tonumber(s.max)
  local corrected, sum = {}, 0
  for i = lo, hi do
    local n = tonumber(s.data[i])
    if n > 0 then corrected[i] = n; sum = sum + n end
  end
  if sum ~= tonumber(s.count) or hi ~= latency.max then return nil, "wrk's histogram is not laid out as wrk 4.1's" end
  local perConnection = math.floor(summary.requests / connections)
  local e = perConnection > 0 and math.floor(summary.duration / perConnection) or math.huge
  -- corrected[v] = raw[v] + raw[v + e] + raw[v + 2e] + … for v > e; chain[v] = raw[v] + chain[v + e].
  local raw, chain, count = {}, {}, 0
  for v = hi, lo, -1 do
    local c = corrected[v] or 0
    if v > e then
      local above = chain[v + e] or 0
      local r = c - above
      if r < 0 then return nil, "the correction does not invert (negative count)" end
      chain[v] = r + above
      if r > 0 then raw[v] = r end
      count = count + r
    elseif c > 0 then
      raw[v] = c
      count = count + c
    end
  end
  local recorded = summary.requests - summary.errors.timeout
  if count ~= recorded then
    return nil, string.format("rebuilt %d samples, wrk recorded %d", count, recorded)
  end
  return { counts = raw, lo = lo, hi = hi, count = count }
end

function done(summary, latency, requests)
  local e = summary.errors
  local h, problem = observed(latency, summary)
  local p50 = h and percentile(h, 50) or 0
  local p99 = h and percentile(h, 99) or 0
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"p50Us":%d,"p99Us":%d,"p50CorrectedUs":%d,"p99CorrectedUs":%d,"maxUs":%d,"observedError":"%s","status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration, p50, p99, latency:percentile(50), latency:percentile(99), latency.max, problem or "",
    e.status, e.connect, e.read, e.write, e.timeout))
end
