-- sbot.keeper (periodic work in a helper process) and sbot.lease (a lock in
-- S3 across machines) against the lab's S3 device, with real competing
-- processes; and a server that ignores conditional writes (s3rver) refused.
local helpers = require "helpers"
local servers = require "s3servers"
local keeper = require "sbot.keeper"
local lease = require "sbot.lease"
local s3 = require "sbot.s3"
local json = require "sbot.json"
local sys = require "sbot.sys"

local function wait_for(pred, seconds)
  local t0 = sys.monotime()
  while sys.monotime() - t0 < seconds do
    if pred() then return true end
    keeper.sleep(0.05)
  end
  return pred()
end

describe("sbot.keeper", function()
  local tmp
  setup(function()
    tmp = helpers.tmpdir("keeper")
    helpers.write_file(tmp .. "/ktick.lua", [[
      local M = {}
      function M.tick(args, state)
        state = state or { n = 0 }
        state.n = math.tointeger(state.n) + 1
        local f = assert(io.open(args.file, "a"))
        f:write(require("sbot.secret").reveal(args.word), " ", state.n, "\n")
        f:close()
        if args.fail_at == state.n then return nil, "failing on purpose with " .. args.word end
        return state
      end
      return M]])
    package.path = tmp .. "/?.lua;" .. package.path
  end)
  teardown(function() os.execute("rm -rf " .. helpers.shquote(tmp)) end)

  it("calls module.fn(args, state) every interval in a helper process until stopped", function()
    local secret = require("sbot.secret").new("w0rd-S3cret")
    local out = tmp .. "/ticks"
    local k = assert(keeper.start { module = "ktick", fn = "tick", interval = 0.05, name = "ticker",
      args = { file = out, word = secret } })
    assert.is_true(k:alive())
    assert.are_not.equal(sys.getpid(), k:pid())
    assert.is_true(wait_for(function()
      local f = io.open(out)
      local t = f and f:read("a") or ""
      if f then f:close() end
      return t:find("w0rd%-S3cret 3")
    end, 10))
    local state = assert(k:stop())
    assert.is_true(state.n >= 3)
    assert.is_false(k:alive())
    assert.are.same({ nil, "keeper: already stopped", "keeper" }, { k:stop() })
    -- the last line written is the state returned
    local last = helpers.read_file(out):match("(%d+)\n$")
    assert.are.equal(math.tointeger(state.n), tonumber(last))
  end)

  it("reports a failing function, redacting secrets, and refuses args that cannot be copied", function()
    local secret = require("sbot.secret").new("hush-7781")
    local k = assert(keeper.start { module = "ktick", fn = "tick", interval = 0.02,
      args = { file = tmp .. "/fail", word = secret, fail_at = 2 } })
    -- (the helper gets a secret object again: "with " .. word is "<redacted>")
    assert.is_true(wait_for(function() return not k:alive() end, 10))
    local ok, err, code = k:stop()
    assert.is_nil(ok)
    assert.are.equal("keeper", code)
    assert.matches("keeper ktick: failing on purpose with <redacted>", err, 1, true)
    assert.has_error(function() keeper.start { module = "ktick", fn = "tick", interval = 1, args = { f = print } } end,
      "keeper.start: args holds a function at args.f (only plain data and secrets cross into the helper)")
    assert.has_error(function() keeper.start { module = "ktick", fn = "tick", interval = 0 } end,
      "keeper.start: 'interval' must be a number of seconds from 0.01 to 86400")
    assert.has_error(function() keeper.start { module = "ktick", fn = "tick", interval = 1, every = 2 } end,
      "keeper.start: unknown option 'every' (expected module, fn, args, interval, name)")
    local missing = assert(keeper.start { module = "no.such.module", fn = "x", interval = 0.02 })
    local r, merr = missing:stop()
    assert.is_nil(r)
    assert.matches("module 'no.such.module' not found", merr)
  end)

  it("dies with its parent", function()
    local script = tmp .. "/parent.lua"
    helpers.write_file(script, string.format([[
      package.path = %q .. "/?.lua;" .. package.path
      local keeper = require "sbot.keeper"
      local k = assert(keeper.start { module = "ktick", fn = "tick", interval = 0.05,
        args = { file = %q, word = "orphan" } })
      local f = assert(io.open(%q, "w")); f:write(k:pid()); f:close()
      keeper.sleep(60)]], tmp, tmp .. "/orphan", tmp .. "/orphan.pid"))
    local p = helpers.spawn(helpers.shquote(helpers.sbot_bin) .. " run " .. helpers.shquote(script))
    assert.is_true(wait_for(function() return io.open(tmp .. "/orphan.pid") ~= nil end, 10))
    local kpid = tonumber(helpers.read_file(tmp .. "/orphan.pid"))
    assert.is_true(sys.pid_alive(kpid))
    p:stop("KILL")
    assert.is_true(wait_for(function() return not sys.pid_alive(kpid) end, 10))
  end)
end)

describe("sbot.lease against the lab's S3", function()
  local srv, c, tmp

  setup(function()
    srv = servers.start_lab()
    tmp = helpers.tmpdir("lease")
    c = assert(s3.client { endpoint = srv.endpoint, access_key = srv.access_key, secret_key = srv.secret_key,
      region = srv.region, tls = srv.tls })
  end)
  teardown(function()
    servers.stop(srv)
    if tmp then os.execute("rm -rf " .. helpers.shquote(tmp)) end
  end)

  -- a holder process: takes the lease, says so in a file, holds it `hold`
  -- seconds (renewed by its keeper), releases it and says how that went
  local function holder(key, ttl, hold, tag)
    local script = tmp .. "/holder-" .. tag .. ".lua"
    helpers.write_file(script, string.format([[
      local s3, lease, keeper = require "sbot.s3", require "sbot.lease", require "sbot.keeper"
      local c = assert(s3.client { endpoint = %q, access_key = %q, secret_key = %q, region = %q,
        tls = { pin_sha256 = %q } })
      local function say(what) local f = assert(io.open(%q, "a")); f:write(what, "\n"); f:close() end
      local l, err, code = lease.acquire(c, { bucket = %q, key = %q, ttl = %d, name = "server %s",
        holder = { run_id = "run-%s" } })
      if not l then say("refused " .. tostring(code) .. " " .. tostring(err)); os.exit(3) end
      say("acquired")
      keeper.sleep(%f)
      local ok, rerr = l:release()
      say(ok and "released" or ("release failed " .. tostring(rerr)))]],
      srv.endpoint, srv.access_key, srv.secret_key, srv.region, srv.tls.pin_sha256,
      tmp .. "/" .. tag .. ".log", srv.bucket, key, ttl, tag, tag, hold))
    return helpers.spawn(helpers.shquote(helpers.sbot_bin) .. " run " .. helpers.shquote(script)),
      tmp .. "/" .. tag .. ".log"
  end

  local function said(log, what)
    local f = io.open(log)
    if not f then return false end
    local t = f:read("a")
    f:close()
    return t:find(what, 1, true) ~= nil, t
  end

  it("lets one of two processes hold it, renewed past its ttl, then the other", function()
    local key = "locks/contended.lease"
    local a, alog = holder(key, 4, 9, "a")
    assert.is_true(wait_for(function() return said(alog, "acquired") end, 20), select(2, said(alog, "")))
    -- another process is refused, naming the holder
    local b, blog = holder(key, 4, 0.1, "b")
    assert.is_true(wait_for(function() return not b:alive() end, 20))
    local _, btext = said(blog, "")
    assert.matches("refused Locked server b is locked by pid %d+ on host .* %(run run%-a%)", btext)
    -- 6 s later (past the ttl of 4 s) the lease is still held: the keeper renewed it
    keeper.sleep(6)
    local info = assert(lease.read(c, srv.bucket, key))
    assert.is_false(info.stale == true)
    assert.are.equal("run-a", info.holder.run_id)
    assert.is_true(info.server_time - (info.last_modified or 0) < 4)
    local b2, b2log = holder(key, 4, 0.1, "b2")
    assert.is_true(wait_for(function() return not b2:alive() end, 20))
    assert.is_true((said(b2log, "refused Locked")))
    -- after a releases, the next one gets it
    assert.is_true(wait_for(function() return said(alog, "released") end, 20), select(2, said(alog, "")))
    local l = assert(lease.acquire(c, { bucket = srv.bucket, key = key, ttl = 5, keep = false }))
    assert.is_true(l:release())
    assert.are.equal("NoSuchKey", select(3, c:head_object { bucket = srv.bucket, key = key }))
    a:stop()
  end)

  it("takes over a lease whose holder died on this host, and one that expired, with a warning", function()
    local key = "locks/dead.lease"
    local a, alog = holder(key, 60, 60, "dead")
    assert.is_true(wait_for(function() return said(alog, "acquired") end, 20))
    a:stop("KILL")
    local l = assert(lease.acquire(c, { bucket = srv.bucket, key = key, ttl = 30, keep = false }))
    assert.is_true(l:release())
    -- a holder on another host: only expiry frees it
    key = "locks/expired.lease"
    assert(c:put_object { bucket = srv.bucket, key = key, content_type = "application/json", body = json.encode {
      holder = { host = "elsewhere.example", pid = 1, run_id = "remote-run" }, token = "theirs", ttl = 3,
      acquired = "2026-01-01T00:00:00Z" } })
    local none, err, code = lease.acquire(c, { bucket = srv.bucket, key = key, ttl = 30, keep = false })
    assert.is_nil(none)
    assert.are.equal("Locked", code)
    assert.matches("pid 1 on host elsewhere.example %(run remote%-run%)", err)
    keeper.sleep(4.2)
    local taken = assert(lease.acquire(c, { bucket = srv.bucket, key = key, ttl = 30, keep = false }))
    local info = assert(lease.read(c, srv.bucket, key))
    assert.are.equal(taken.token, info.token)
    -- the old holder, renewing, finds out
    local old = setmetatable({ client = c, bucket = srv.bucket, key = key, name = "old", etag = "0123",
      ttl = 3, token = "theirs", holder = {}, where = "x" }, getmetatable(taken))
    assert.are.equal("LeaseLost", select(3, old:renew()))
    assert.is_true(taken:release())
  end)

  it("keeps what it wrote when the answer was lost and the retry met its own change", function()
    -- the create lands, its answer is lost, sbot.http sends the PUT again:
    -- If-None-Match: * now fails against the lease this very call made
    local key = "locks/lost-answer.lease"
    local lost0 = srv.state().faults.lostanswers or 0
    srv.faults("s3:lostanswers=1")
    local l, err, code = lease.acquire(c, { bucket = srv.bucket, key = key, ttl = 30, keep = false })
    srv.faults("")
    assert.are.equal(lost0 + 1, srv.state().faults.lostanswers, "the create's answer was lost")
    assert.is_truthy(l, tostring(code) .. " " .. tostring(err))
    assert.are.equal(l.token, assert(lease.read(c, srv.bucket, key)).token)
    -- a renewal lands, its answer is lost, the retry's If-Match (the ETag
    -- before it) fails: the lease is still ours, with a new ETag
    srv.faults("s3:lostanswers=1")
    local ok, rerr, rcode = l:renew()
    srv.faults("")
    assert.are.equal(lost0 + 2, srv.state().faults.lostanswers, "the renewal's answer was lost")
    assert.is_true(ok, tostring(rcode) .. " " .. tostring(rerr))
    assert.are.equal(assert(lease.read(c, srv.bucket, key)).etag, l.etag)
    assert.is_true(l:renew())
    assert.is_true(l:release())
  end)

  it("keeps renewing after a renewal that failed, each one bounded by the ttl", function()
    -- the windows x the build's slowdown (the bound is wall-clock time)
    local x = helpers.slowdown
    local key = "locks/slow.lease"
    local l = assert(lease.acquire(c, { bucket = srv.bucket, key = key, ttl = 6 * x, keep = false }))
    local args = { client = c:options(), bucket = srv.bucket, key = key, name = "slow", ttl = 6 * x, token = l.token,
      holder = l.holder, acquired = l.acquired, where = l.where, etag = l.etag }
    -- answers 3 s late: a renewal of a 6 s lease that waits that long is
    -- worth nothing; it gives up and the keeper tries again at its next tick
    srv.faults("s3:latency=" .. 3000 * x)
    local t0 = sys.monotime()
    local st, err = lease.keep(args, nil)
    local waited = sys.monotime() - t0
    srv.faults("")
    assert.is_table(st, "the keeper stopped renewing: " .. tostring(err))
    assert.matches("timed out", st.error)
    assert.are.equal(1, st.failures)
    -- given up at ttl/4 = 1.5 s, not after the 3 s answer
    assert.is_true(waited < 2.9 * x, string.format("the failed renewal took %.2f s", waited))
    -- refused (503 SlowDown): one request, not retried within the tick
    -- (the next tick is the retry)
    local n0 = srv.state().faults.requests
    srv.faults("s3:503=1")
    local st1 = assert(lease.keep(args, st))
    srv.faults("")
    assert.matches("SlowDown", st1.error)
    assert.are.equal(2, st1.failures)
    assert.are.equal(n0 + 1, srv.state().faults.requests, "requests made by the refused renewal")
    st = st1
    local st2 = assert(lease.keep(args, st))
    assert.is_nil(st2.error)
    local info = assert(lease.read(c, srv.bucket, key))
    assert.are.equal(info.etag, st2.etag)
    assert.are.equal(l.token, info.token)
    l.etag = st2.etag
    assert.is_true(l:release())
  end)

  it("has its keeper renew again at the next tick after a renewal that failed", function()
    -- ttl 3 (x the build's slowdown: a real keeper on wall-clock ticks, whose
    -- renewals must each come back within their bound): a tick every second,
    -- each request bounded by 1 s
    local x = helpers.slowdown
    local key = "locks/keeper-retry.lease"
    local l = assert(lease.acquire(c, { bucket = srv.bucket, key = key, ttl = 3 * x }))
    assert.is_true(l.keeper:alive())
    -- the next renewal is answered 2 s late: the keeper gives up on it
    local n0 = srv.state().faults.requests
    srv.faults("s3:latency=" .. 2000 * x)
    assert.is_true(wait_for(function() return srv.state().faults.requests > n0 end, 10 * x), "no renewal came")
    srv.faults("")
    local failed_at = assert(lease.read(c, srv.bucket, key))
    -- it goes on renewing: the lease gets fresher writes and never expires
    assert.is_true(wait_for(function()
      local info = assert(lease.read(c, srv.bucket, key))
      return info.etag ~= failed_at.etag and info.last_modified > failed_at.last_modified
    end, 10 * x), "the keeper did not renew after the failed renewal")
    assert.is_true(l.keeper:alive(), "the keeper stopped after a failed renewal")
    keeper.sleep(3.5 * x)
    local info = assert(lease.read(c, srv.bucket, key))
    assert.is_false(info.stale == true)
    assert.are.equal(l.token, info.token)
    local st = assert(l.keeper:stop())
    l.keeper = nil
    assert.is_nil(st.error, "the last renewal succeeded")
    assert.is_true((math.tointeger(st.failed) or 0) >= 1, "the late renewal failed (bounded by ttl/4)")
    l.etag = st.etag
    assert.is_true(l:release())
  end)

  it("reports a lease lost while held (taken over after expiry) at release", function()
    local key = "locks/lost.lease"
    local l = assert(lease.acquire(c, { bucket = srv.bucket, key = key, ttl = 3, keep = false }))
    keeper.sleep(4.2)
    local other = assert(lease.acquire(c, { bucket = srv.bucket, key = key, ttl = 30, keep = false }))
    local ok, err, code = l:release()
    assert.is_nil(ok)
    assert.are.equal("LeaseLost", code)
    assert.matches("taken over by pid %d+", err)
    assert.is_true(other:release())
  end)
end)

describe("sbot.lease against s3rver", function()
  it("refuses a server that ignores conditional writes", function()
    local srv = servers.start_s3rver()
    local c = assert(s3.client { endpoint = srv.endpoint, access_key = servers.access_key,
      secret_key = servers.secret_key })
    assert(c:create_bucket("leases"))
    local l, err, code = lease.acquire(c, { bucket = "leases", key = "x.lease", keep = false })
    servers.stop(srv)
    assert.is_nil(l)
    assert.are.equal("NoConditionalWrites", code)
    assert.matches("ignores conditional writes", err)
  end)
end)
