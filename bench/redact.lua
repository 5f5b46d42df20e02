-- bench/redact.lua: cost of the log redactor (sbot.log.redact, the function
-- every log line, error report and run record goes through) as the number of
-- registered secrets grows, over a 100 kB text.
--
-- Baseline: `string.lower` of the same text: one byte-by-byte pass that builds
-- a new string of the same size, the least work a redactor (which copies the
-- text into a new string) can do, whatever the number of secrets.
--
-- The text is log-like lines; 100 of them hold one of the registered secrets,
-- a few hold a secret's prefix, and a fifth of the secrets share one 4-byte
-- prefix ("AKIA", like AWS access keys). Secrets are added in stages (1, 100,
-- 1,000, 10,000): "first" is the first redact after a stage (it includes any
-- work done once per change of the secret set), "median" the median of the
-- next BENCH_RUNS calls (default 5). Peak RSS at the end.
--   build/sbot run bench/redact.lua [MAX_SECRETS]
local log = require "sbot.log"
local sys = require "sbot.sys"

local max = tonumber(arg and arg[1]) or 10000
local RUNS = tonumber(os.getenv("BENCH_RUNS") or "5")

-- deterministic pseudo-random (xorshift), so every run sees the same data
local x = 88172645
local function rand(n)
  x = x ~ ((x << 13) & 0xffffffff); x = x ~ (x >> 17); x = x ~ ((x << 5) & 0xffffffff)
  return x % n
end
local ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
local function word(len)
  local t = {}
  for i = 1, len do
    local k = rand(#ALNUM) + 1
    t[i] = ALNUM:sub(k, k)
  end
  return table.concat(t)
end

local secrets = {}
for i = 1, max do
  secrets[i] = (i % 5 == 0) and ("AKIA" .. word(16)) or word(24 + rand(16))
end

local lines, size, i = {}, 0, 0
while size < 100 * 1024 do
  i = i + 1
  local l
  if i % 40 == 0 then
    l = string.format("12:00:%02d.123Z INFO  login ok server=r630-%02d token=%s", i % 60, i % 99,
      secrets[rand(math.min(max, 1000)) + 1])
  elseif i % 41 == 0 then
    l = string.format("12:00:%02d.123Z DEBUG key id AKIA%s seen; partial %s", i % 60, word(16),
      secrets[rand(max) + 1]:sub(1, 10))
  else
    l = string.format("12:00:%02d.123Z INFO  GET https://10.0.0.%d/redfish/v1/Systems/System.Embedded.1 "
      .. "status=200 ms=%d etag=W/\"%s\"", i % 60, i % 250, rand(900), word(12))
  end
  lines[#lines + 1] = l
  size = size + #l + 1
end
local text = table.concat(lines, "\n")

local function median(f)
  local t = {}
  for r = 1, RUNS do
    local t0 = sys.monotime()
    f()
    t[r] = sys.monotime() - t0
  end
  table.sort(t)
  return t[(RUNS + 1) // 2]
end

local base = median(function() for _ = 1, 100 do text:lower() end end) / 100

print(string.format("text %d bytes; baseline (string.lower of it): %.3f ms", #text, base * 1000))
local added = 0
for _, stage in ipairs { 1, 100, 1000, 10000, 100000 } do
  if stage > max then break end
  for k = added + 1, stage do log.add_secret(secrets[k]) end
  added = stage
  local t0 = sys.monotime()
  local out = log.redact(text)
  local first = sys.monotime() - t0
  local m = median(function() log.redact(text) end)
  local hidden = 0
  for k = 1, stage do
    if not out:find(secrets[k], 1, true) then hidden = hidden + 1 end
  end
  assert(hidden == stage, "a registered secret is still in the redacted text")
  print(string.format("%6d secrets: first %9.3f ms, median %9.3f ms, ratio to baseline %8.1f",
    stage, first * 1000, m * 1000, m / base))
end
for l in io.lines("/proc/self/status") do
  local v = l:match("^VmHWM:%s*(%d+ kB)")
  if v then print("peak RSS " .. v) end
end
