-- GET /v1/experiments/<name>/assignment?unit=<unit>, a new unit on every request.
-- Used unchanged against ranktune and against the baseline.
-- wrk -s assignment.lua URL -- <experiment name> <run prefix> [<client key>]
local threads = {}
local counter = 0
local path = "/v1/experiments/similar-items/assignment?unit="

function setup(thread)
   thread:set("thread_id", #threads)
   table.insert(threads, thread)
end

function init(args)
   local name = args[1] or "similar-items"
   local prefix = args[2] or "u"
   path = "/v1/experiments/" .. name .. "/assignment?unit=" .. prefix .. "-" .. thread_id .. "-"
   if args[3] then
      wrk.headers["Authorization"] = "Bearer " .. args[3]
   end
end

function request()
   counter = counter + 1
   return wrk.format("GET", path .. counter)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,"
         .. "\"max_us\":%d,\"errors_connect\":%d,\"errors_read\":%d,\"errors_write\":%d,"
         .. "\"errors_status\":%d,\"errors_timeout\":%d}\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
