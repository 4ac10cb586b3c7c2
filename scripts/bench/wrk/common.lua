-- Shared by every wrk scenario of `make bench` (loaded first by scripts/bench.sh):
-- a thread number for per-thread seeds and id ranges, and one machine-readable
-- summary line that the script parses.
local threads = {}
ops = 0  -- per-thread count of finished operations, for scenarios that count them

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 7919 + tid * 104729)
  if scenario_init then scenario_init(args) end
end

-- Number-valued environment knob.
function knob(name, default)
  return tonumber(os.getenv(name) or "") or default
end

json_headers = { ["Content-Type"] = "application/json" }

function done(summary, latency, requests)
  local e = summary.errors
  local ops = 0
  for _, t in ipairs(threads) do ops = ops + (tonumber(t:get("ops")) or 0) end
  io.write(string.format(
    "WRK requests=%d duration_us=%d p50_us=%d p99_us=%d p999_us=%d non2xx=%d socket_errors=%d ops=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), e.status, e.connect + e.read + e.write + e.timeout, ops))
end
