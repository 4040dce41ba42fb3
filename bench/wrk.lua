-- wrk script for hookledger's load benchmark.
-- MODE (env): unique | redeliver | mix. Every request posts a ~600-byte JSON
-- event to /webhooks/bench; X-Request-Id is the dedup key (event id rule).
-- unique: a fresh id per request; redeliver: ids from a pool of POOL ids
-- that the driver delivered once beforehand; mix: alternating.
local mode = os.getenv("MODE") or "unique"
local run = os.getenv("RUN_ID") or tostring(os.time())
local pool = tonumber(os.getenv("POOL") or "1000")
local path = "/webhooks/" .. (os.getenv("SOURCE") or "bench")
local body = [[{"id":"evt_bench","object":"event","type":"invoice.paid","created":1764170000,]] ..
  [["data":{"object":{"id":"in_1QbENCH","object":"invoice","amount_due":2000,"amount_paid":2000,]] ..
  [["currency":"usd","customer":"cus_RbENCHmark","status":"paid","lines":{"object":"list","data":[]},]] ..
  [["metadata":{"order_id":"6735","plan":"pro"},"hosted_invoice_url":"https://invoice.example/i/abc",]] ..
  [["period_start":1764170000,"period_end":1766762000,"subtotal":2000,"total":2000}},]] ..
  [["livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null}}]]

local threads = {}
function setup(thread)
  thread:set("tid", tostring(#threads + 1))
  table.insert(threads, thread)
end

local counter = 0
function request()
  counter = counter + 1
  local id
  if mode == "unique" or (mode == "mix" and counter % 2 == 1) then
    id = "u-" .. run .. "-" .. tid .. "-" .. counter
  else
    id = "seed-" .. (counter * 7919 % pool)
  end
  return wrk.format("POST", path,
    { ["Content-Type"] = "application/json", ["X-Request-Id"] = id }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d p999_us=%d non2xx=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), e.status, e.connect + e.read + e.write + e.timeout))
end
