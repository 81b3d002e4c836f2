-- wrk script: POST precomputed, correctly signed Twilio webhooks, each one once.
-- Usage: wrk -t T -c C -d 15s -s bench/wrk_post.lua http://127.0.0.1:PORT/sms -- /path/prefix
-- Thread i reads "<prefix>.<i>": one request per line, "signature<TAB>urlencoded body".
-- If a thread runs out it starts over (counted in "wraps": repeated MessageSids would hit the
-- app's dedupe, so the benchmark sizes the pool to avoid that and reports any wrap).

local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  local path = args[1] .. "." .. id
  reqs = {}
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  for line in io.lines(path) do
    local tab = string.find(line, "\t", 1, true)
    headers["X-Twilio-Signature"] = string.sub(line, 1, tab - 1)
    reqs[#reqs + 1] = wrk.format("POST", wrk.path, headers, string.sub(line, tab + 1))
  end
  n = 0
  wraps = 0
end

function request()
  n = n + 1
  if n > #reqs then
    n = 1
    wraps = wraps + 1
  end
  return reqs[n]
end

function done(summary, latency, requests)
  local w = 0
  for _, t in ipairs(threads) do
    w = w + (t:get("wraps") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, ' ..
    '"max_us": %d, "wraps": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max, w))
end
