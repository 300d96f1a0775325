-- wrk script: POST a fixed JSON body (or, BENCH_METHOD=GET, GET the URL as given) with a bearer
-- token; prints one BENCH_JSON line at the end.
wrk.method = os.getenv("BENCH_METHOD") or "POST"
if wrk.method == "POST" then
  wrk.body = os.getenv("BENCH_BODY")
  wrk.headers["Content-Type"] = "application/json"
else
  -- A GET has no Content-Type: the gateway's CSRF rule wants this header (as Apollo's).
  wrk.headers["apollo-require-preflight"] = "true"
end
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

-- GraphQL answers its errors with 200: count bodies that carry an "errors" member.
-- (a global, so `done` can read each thread's count with thread:get)
gql_errors = 0
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

-- BENCH_RETRY_AFTER=1: clients that honour a refusal's Retry-After, as the API asks: after a
-- 503 one request waits that long before it is sent. wrk's closed loop would resend at once,
-- and a storm of refusals costs the gateway about as much CPU as the orders it takes in.
local honour_retry_after = os.getenv("BENCH_RETRY_AFTER") == "1"
local owed_ms = {}

response = function(status, headers, body)
  if body and string.find(body, '"errors"', 1, true) then
    gql_errors = gql_errors + 1
  end
  if honour_retry_after and status == 503 then
    local seconds = tonumber(headers["retry-after"] or headers["Retry-After"] or "1") or 1
    table.insert(owed_ms, seconds * 1000)
  end
end

if honour_retry_after then
  delay = function()
    return table.remove(owed_ms, 1) or 0
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  local gql = 0
  for _, thread in ipairs(threads) do
    gql = gql + (thread:get("gql_errors") or 0)
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"socket_errors":%d,"non2xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"gql_errors":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, gql))
end
