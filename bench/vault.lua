-- bench/vault.lua: resolving N secret references through the lab's Vault
-- (sbot.vault: one AppRole login, one mount lookup, N KV v2 reads over
-- keep-alive HTTPS, each value wrapped and registered with the redactor)
-- against a named baseline, the same N references from 0600 files
-- (sbot.secret's file resolver). Median of 7 runs, a fresh client per run
-- (nothing cached), and peak RSS.
--   build/sbot run bench/vault.lua [N]   (N default 50; SBOT_BIN: the binary for the lab)
local http = require "sbot.http"
local json = require "sbot.json"
local secret = require "sbot.secret"
local sys = require "sbot.sys"
local vault = require "sbot.vault"
local n = tonumber(arg[1]) or 50
local RUNS = 7

local sbot = os.getenv("SBOT_BIN") or "build/sbot" -- the sbot that runs the lab
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir .. "/secrets"))
assert(os.execute(string.format("%s lab --servers 1 --dir %s >%s/lab.log 2>&1 &", sbot, dir, dir)))
local info
for _ = 1, 200 do
  local f = io.open(dir .. "/lab.json")
  if f then info = json.decode(f:read("a")); f:close(); if info then break end end
  os.execute("sleep 0.05")
end
assert(info, "the lab did not start")
local site = dofile(dir .. "/site.lua")
local V = site.vault
local f = assert(io.open(dir .. "/vault-root-token"))
local root = f:read("l")
f:close()

local refs = {}
for i = 1, n do
  local path, value = string.format("bench/n%03d", i), string.format("bench-secret-%03d-%s", i, os.time())
  local r = assert(http.post(V.addr .. "/v1/secret/data/" .. path, { tls = V.tls,
    headers = { ["X-Vault-Token"] = root, ["Content-Type"] = "application/json" },
    body = json.encode({ data = { password = value } }) }))
  assert(r.status == 200, r.body)
  assert(os.execute(string.format("mkdir -p %s/secrets/%s && printf %%s %s > %s/secrets/%s/password && chmod 600 %s/secrets/%s/password",
    dir, path, value, dir, path, dir, path)))
  refs[i] = "secret:" .. path .. ":password"
end

local function median(fn)
  local t = {}
  for r = 1, RUNS do
    local t0 = sys.monotime()
    fn()
    t[r] = sys.monotime() - t0
  end
  table.sort(t)
  return t[(RUNS + 1) // 2]
end

local function resolve_all(ctx)
  local tree = {}
  for i, r in ipairs(refs) do tree[i] = r end
  assert(secret.resolve_tree(tree, ctx))
  assert(secret.is_secret(tree[n]))
end

local logins0
local via_vault = median(function()
  local c = vault.client { addr = V.addr, tls = V.tls, auth = V.auth }
  resolve_all({ resolvers = { c:resolver() } })
  assert(c.stats.logins == 1 and c.stats.reads == n)
end)
local via_files = median(function()
  resolve_all({ resolvers = { secret.file }, secrets_dir = dir .. "/secrets" })
end)
local st = assert(http.get(info.devices.vault.state_url, { tls = V.tls }))
logins0 = json.decode(st.body).devices.vault.counts.logins
http.post(info.devices.vault.url .. "/lab/stop", { tls = V.tls })
os.execute("sleep 0.3; rm -rf " .. dir)
local rss = "?"
for line in io.lines("/proc/self/status") do rss = line:match("^VmHWM:%s*(%d+ kB)") or rss end
print(string.format("vault, %d references: %.2f ms (%.3f ms/secret, 1 login each run, %d logins in all); "
  .. "baseline 0600 files: %.2f ms (%.3f ms/secret); ratio %.1f; peak RSS %s",
  n, via_vault * 1000, via_vault * 1000 / n, logins0, via_files * 1000, via_files * 1000 / n,
  via_vault / via_files, rss))
