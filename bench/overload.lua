-- wrk script of the overload scenario (bench/scenarios/overload.py): POSTs one body template
-- with a fresh conversation id per request, counts answers by status and prints one JSON line.
-- wrk -t1 -c1000 -d10s -s bench/overload.lua URL -- BODY_FILE API_KEY PREFIX
-- The body file holds "@CID@" where the conversation id goes and "@UID@" for the user id
-- (one of 200 per run).
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  template = file:read("*a")
  file:close()
  prefix = args[3] .. "-" .. tid .. "-"
  key = args[2]
  sent = 0
  statuses = {}
end

function request()
  sent = sent + 1
  local body = string.gsub(template, "@CID@", prefix .. sent, 1)
  body = string.gsub(body, "@UID@", prefix .. "u" .. (sent % 200), 1)
  return wrk.format("POST", "/v1/conversations/end",
    {["Content-Type"] = "application/json", ["X-API-Key"] = key}, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[tostring(status)] = (counts[tostring(status)] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%s": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_s": %.3f, "statuses": {%s}, "errors": {"connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d}, "latency_ms": {"p50": %.2f, "p95": %.2f, ' ..
    '"p99": %.2f, "max": %.2f}}\n',
    summary.requests, summary.duration / 1e6, table.concat(parts, ", "), e.connect, e.read,
    e.write, e.timeout, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
