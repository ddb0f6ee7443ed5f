-- wrk script for bench/auth/run.py.
--
--   wrk ... -s wrk.lua URL -- media    PREFIX          playlist, newest segment, playlist, ... (what players fetch)
--   wrk ... -s wrk.lua URL -- playlist PREFIX          the playlist only (the request where auth costs most)
--   wrk ... -s wrk.lua URL -- request  METHOD PATH [BODY]
--
-- Extra headers come from PI_STREAM_BENCH_HEADERS ("Name: value" lines), not
-- argv: a password or session cookie in argv is readable by every local user.
-- done() prints one line, "BENCH-JSON {...}", with the totals and every status seen.

local mode, prefix, method, path, body
local segment = nil
local counter = 0
statuses = {}  -- global: done() reads it from each thread with thread:get
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   mode = args[1]
   if mode == "request" then
      method, path, body = args[2], args[3], args[4]
   else
      prefix = args[2]
   end
   local extra = os.getenv("PI_STREAM_BENCH_HEADERS") or ""
   for line in extra:gmatch("[^\n]+") do
      local name, value = line:match("^([^:]+):%s*(.*)$")
      if name then
         wrk.headers[name] = value
      end
   end
end

function request()
   counter = counter + 1
   if mode == "request" then
      return wrk.format(method, path, nil, body)
   end
   if mode == "media" and segment and counter % 2 == 0 then
      return wrk.format("GET", segment)
   end
   return wrk.format("GET", prefix .. "index.m3u8")
end

function response(status, headers, response_body)
   statuses[status] = (statuses[status] or 0) + 1
   -- Follow the live edge: the newest segment of the last playlist (older ones are deleted as the camera runs).
   if mode == "media" and status == 200 and response_body:sub(1, 7) == "#EXTM3U" then
      local newest = nil
      for line in response_body:gmatch("[^\r\n]+") do
         if line:sub(1, 1) ~= "#" then
            newest = line
         end
      end
      if newest then
         segment = newest:sub(1, 1) == "/" and newest or prefix .. newest
      end
   end
end

function done(summary, latency, requests)
   local merged = {}
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses") or {}) do
         merged[status] = (merged[status] or 0) + count
      end
   end
   local parts = {}
   for status, count in pairs(merged) do
      table.insert(parts, string.format('"%d": %d', status, count))
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH-JSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
         .. '"latency_us": {"p50": %d, "p99": %d, "max": %d}, "statuses": {%s}}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max, table.concat(parts, ", ")))
end
