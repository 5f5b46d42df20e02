-- bench/http: sbot.http throughput against named baselines.
--
--  A. 1,000 GETs of a small resource from a loopback server that adds 50 ms
--     latency (tests/servers/httpbin.py /slow): http.batch{per_host = 8}
--     versus the same requests one after another with http.get.
--  B. 10,000 keep-alive GETs of a small static file from nginx (no latency):
--     sbot (http.get in a loop, one interpreter) versus curl doing the same
--     URLs in one process (a -K config listing 10,000 URLs: one connection,
--     reused), as requests per second and a ratio.
--
-- Each figure is the median of BENCH_RUNS runs (default 3 for A, 5 for B).
-- Usage: bench/http   (or: build/sbot run bench/http.lua)
-- Env: BENCH_RUNS, BENCH_N_LATENCY (1000), BENCH_N_KEEPALIVE (10000), SBOT_BIN.
local src = os.getenv("SBOT_SOURCE_DIR") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path
local helpers = require "helpers"
local servers = require "test_servers"
local http = require "sbot.http"

local runs_a = tonumber(os.getenv("BENCH_RUNS") or "3")
local runs_b = tonumber(os.getenv("BENCH_RUNS") or "5")
local n_lat = tonumber(os.getenv("BENCH_N_LATENCY") or "1000")
local n_ka = tonumber(os.getenv("BENCH_N_KEEPALIVE") or "10000")

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

local function clock()
  -- monotonic wall clock from the kernel, sub-millisecond
  local f = assert(io.open("/proc/uptime"))
  local up = f:read("n")
  f:close()
  return up
end

local function now()
  -- /proc/uptime has 10 ms resolution: use date for finer timing
  local p = io.popen("date +%s.%N")
  local v = tonumber(p:read("a"))
  p:close()
  return v or clock()
end

local function peak_rss_kib()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmHWM:%s+(%d+) kB")
    if kb then return tonumber(kb) end
  end
end

local function fmt(t) return string.format("%.3f s", t) end

-- ---------------------------------------------------------------- A ------
local function bench_latency()
  local srv = servers.httpbin()
  local url = srv.url("/slow?ms=50")
  local reqs = {}
  for i = 1, n_lat do reqs[i] = { url = url .. "&i=" .. i } end
  -- warm up: open the connections once
  http.batch({ { url = url }, { url = url } }, { per_host = 8 })
  local tb, ts = {}, {}
  for run = 1, runs_a do
    local t0 = now()
    local res = http.batch(reqs, { per_host = 8, total = 64 })
    tb[run] = now() - t0
    for i = 1, n_lat do assert(res[i].status == 200, "batch request " .. i .. " failed") end
    t0 = now()
    for i = 1, n_lat do
      local r = assert(http.get(reqs[i].url))
      assert(r.status == 200)
    end
    ts[run] = now() - t0
    io.stderr:write(string.format("  A run %d: batch %s, sequential %s\n", run, fmt(tb[run]), fmt(ts[run])))
  end
  srv:stop()
  local b, s = median(tb), median(ts)
  print(string.format("A. %d GETs, 50 ms server latency (python httpbin), median of %d runs", n_lat, runs_a))
  print(string.format("   http.batch per_host=8 : %s  (%.0f req/s)", fmt(b), n_lat / b))
  print(string.format("   sequential http.get   : %s  (%.0f req/s)", fmt(s), n_lat / s))
  print(string.format("   speed-up batch vs sequential: %.2fx (ideal 8x)", s / b))
end

-- ---------------------------------------------------------------- B ------
local function start_nginx()
  local dir = helpers.tmpdir("bench-nginx")
  os.execute("chmod 755 " .. helpers.shquote(dir))
  os.execute("mkdir -p " .. helpers.shquote(dir .. "/www") .. " " .. helpers.shquote(dir .. "/tmp"))
  helpers.write_file(dir .. "/www/small.txt", string.rep("x", 100) .. "\n")
  os.execute("chmod -R a+rX " .. helpers.shquote(dir))
  local port = helpers.free_port()
  local conf = dir .. "/nginx.conf"
  helpers.write_file(conf, (([[
worker_processes 1;
daemon off;
pid DIR/nginx.pid;
error_log DIR/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path DIR/tmp;
  proxy_temp_path DIR/tmp;
  fastcgi_temp_path DIR/tmp;
  uwsgi_temp_path DIR/tmp;
  scgi_temp_path DIR/tmp;
  server { listen 127.0.0.1:PORT; root DIR/www; }
}
]]):gsub("DIR", dir):gsub("PORT", tostring(port))))
  local h = helpers.spawn("nginx -p " .. helpers.shquote(dir) .. " -c " .. helpers.shquote(conf))
  assert(helpers.wait_port(port, 10), "nginx did not start: " .. h:output())
  h.dir = dir
  h.url = string.format("http://127.0.0.1:%d/small.txt", port)
  return h
end

local function bench_keepalive()
  local ng = start_nginx()
  local url = ng.url
  local cfg = ng.dir .. "/curl.cfg"
  local lines = {}
  for i = 1, n_ka do lines[i] = string.format('url = "%s"\noutput = "/dev/null"', url) end
  helpers.write_file(cfg, table.concat(lines, "\n") .. "\n")
  assert(http.get(url).status == 200)
  local ts, tc = {}, {}
  for run = 1, runs_b do
    local t0 = now()
    for _ = 1, n_ka do
      local r = assert(http.get(url))
      if r.status ~= 200 then error("status " .. r.status) end
    end
    ts[run] = now() - t0
    t0 = now()
    local ok = os.execute("curl -s -f -K " .. helpers.shquote(cfg))
    tc[run] = now() - t0
    assert(ok, "curl failed")
    io.stderr:write(string.format("  B run %d: sbot %s, curl %s\n", run, fmt(ts[run]), fmt(tc[run])))
  end
  ng:stop()
  os.execute("rm -rf " .. helpers.shquote(ng.dir))
  local s, c = median(ts), median(tc)
  print(string.format("B. %d keep-alive GETs of a 101-byte file (nginx), one process each, median of %d runs", n_ka, runs_b))
  print(string.format("   sbot http.get loop : %s  %.0f req/s", fmt(s), n_ka / s))
  print(string.format("   curl -K url list   : %s  %.0f req/s", fmt(c), n_ka / c))
  print(string.format("   ratio sbot/curl req/s: %.2f", c / s))
end

local which = arg and arg[1]
if not which or which == "latency" then bench_latency() end
if not which or which == "keepalive" then bench_keepalive() end
print(string.format("peak RSS of this sbot process: %.1f MiB", peak_rss_kib() / 1024))
