-- POST /v1/events with batches of <batch> "contact" events, each with a unique event_id
-- (<run prefix>-<thread>-<request>-<i>) and a real ticket, cycling through a ticket file.
-- Counts the events acknowledged by 200 answers ("accepted" + "duplicates" of each body).
-- wrk -s events.lua URL -- <tickets file> <run prefix> <batch>
local threads = {}
acked = 0
duplicates = 0
ok_responses = 0
local tickets = {}
local next_ticket = 1
local counter = 0
local prefix = "run"
local batch = 100

function setup(thread)
   thread:set("thread_id", #threads)
   table.insert(threads, thread)
end

function init(args)
   for line in io.lines(args[1]) do
      if #line > 0 then table.insert(tickets, line) end
   end
   prefix = args[2] .. "-" .. thread_id .. "-"
   batch = tonumber(args[3] or "100")
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   local parts = {}
   local base = prefix .. counter .. "-"
   for i = 1, batch do
      parts[i] = '{"ticket":"' .. tickets[next_ticket] .. '","type":"contact","count":1,"event_id":"'
         .. base .. i .. '"}'
      next_ticket = next_ticket % #tickets + 1
   end
   return wrk.format(nil, "/v1/events", nil, '{"events":[' .. table.concat(parts, ",") .. ']}')
end

function response(status, headers, body)
   if status == 200 then
      ok_responses = ok_responses + 1
      acked = acked + tonumber(string.match(body, '"accepted":(%d+)'))
      duplicates = duplicates + tonumber(string.match(body, '"duplicates":(%d+)'))
   end
end

function done(summary, latency, requests)
   local total_acked, total_dup, total_ok = 0, 0, 0
   for _, thread in ipairs(threads) do
      total_acked = total_acked + thread:get("acked")
      total_dup = total_dup + thread:get("duplicates")
      total_ok = total_ok + thread:get("ok_responses")
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,"
         .. "\"max_us\":%d,\"errors_connect\":%d,\"errors_read\":%d,\"errors_write\":%d,"
         .. "\"errors_status\":%d,\"errors_timeout\":%d,\"ok_responses\":%d,\"acked\":%d,"
         .. "\"duplicates\":%d}\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout,
      total_ok, total_acked, total_dup))
end
