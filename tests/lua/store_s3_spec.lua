-- Run records, the index and per-server leases in an s3:// store, against
-- the lab's S3 device with real `sbot run` processes.
local helpers = require "helpers"
local servers = require "s3servers"
local s3 = require "sbot.s3"
local json = require "sbot.json"
local keeper = require "sbot.keeper"

describe("an s3:// store", function()
  local srv, c, tmp

  setup(function()
    srv = servers.start_lab()
    c = assert(s3.client { endpoint = srv.endpoint, access_key = srv.access_key, secret_key = srv.secret_key,
      region = srv.region, tls = srv.tls })
    tmp = helpers.tmpdir("stores3")
    helpers.write_file(tmp .. "/site.lua", string.format([[
      local lab = dofile(%q)
      return {
        servers = { { id = "s1", idrac = { host = "10.0.0.1", password = "idrac-pw-Xy12" } } },
        components = { test_kv = { state_file = %q, want = { a = "1" } } },
        s3 = lab.s3, vault = lab.vault, -- the lab's keys are references into its Vault
      }]], srv.site_path, tmp .. "/{id}.state.json"))
    os.execute("chmod 600 " .. helpers.shquote(tmp .. "/site.lua")) -- it holds secrets in clear
  end)

  teardown(function()
    servers.stop(srv)
    if tmp then os.execute("rm -rf " .. helpers.shquote(tmp)) end
  end)

  local function sbot_run(args, extra_env)
    local all = { "run", helpers.source_dir .. "/tests/support/workflows/kv.lua", "--site", tmp .. "/site.lua" }
    for _, a in ipairs(args) do all[#all + 1] = a end
    return helpers.sbot(all, { cwd = tmp, env = "AWS_ACCESS_KEY_ID= AWS_SECRET_ACCESS_KEY= " .. (extra_env or "") })
  end

  it("keeps each run's results.json and log.jsonl next to its artifacts, and indexes the run", function()
    -- no ?endpoint in the URL: the site's s3 endpoint is used
    local r = sbot_run { "--store", "s3://" .. srv.bucket .. "/records", "--json" }
    assert.are.equal(0, r.code, r.stderr)
    local rec = assert(json.decode(r.stdout))
    local base = "records/" .. rec.run_id .. "/"
    local stored = json.decode(assert(c:get_object { bucket = srv.bucket, key = base .. "results.json" }).body)
    assert.are.equal(rec.run_id, stored.run_id)
    assert.is_true(stored.ok)
    local log = assert(c:get_object { bucket = srv.bucket, key = base .. "log.jsonl" }).body
    assert.matches('"msg":"run finished"', log)
    assert.is_nil(log:find("idrac-pw-Xy12", 1, true))
    assert.is_table(c:head_object { bucket = srv.bucket, key = base .. "s1/test_kv/state.json" })
    local index = json.decode(assert(c:get_object { bucket = srv.bucket, key = "records/metadata/index.json" }).body)
    local e = index.runs[rec.run_id]
    assert.are.equal("kv", e.workflow)
    assert.are.equal("s3://" .. srv.bucket .. "/" .. base .. "results.json", e.results)
    assert.are.equal("ok", e.servers.s1.status)
    assert.are.equal("test_kv", e.servers.s1.components[1].component)
    assert.are.equal("state.json", e.servers.s1.artifacts[1].key)
    assert.is_string(e.servers.s1.artifacts[1].sha256)
    -- a plan run is recorded too; the index keeps both
    local p = sbot_run { "--store", "s3://" .. srv.bucket .. "/records", "--plan", "--json" }
    assert.are.equal(0, p.code, p.stderr)
    local prec = json.decode(p.stdout)
    index = json.decode(assert(c:get_object { bucket = srv.bucket, key = "records/metadata/index.json" }).body)
    assert.are.equal("plan", index.runs[prec.run_id].mode)
    assert.is_table(index.runs[rec.run_id])
  end)

  it("fails a run whose record cannot be kept in the store, saying why", function()
    local r = sbot_run { "--store", "s3://no-such-bucket/records" }
    assert.are.equal(1, r.code)
    assert.matches("run record not kept in the store: run record: store put s3://no%-such%-bucket/records/.*NoSuchBucket", r.stderr)
  end)

  it("loses no index entry with 20 concurrent writers", function()
    local script = tmp .. "/writer.lua"
    helpers.write_file(script, string.format([[
      local store, keeper = require "sbot.store", require "sbot.keeper"
      local st = assert(store.open("s3://%s/crowd", { endpoint = %q, access_key = %q, secret_key = %q,
        tls = { pin_sha256 = %q } }))
      local me = arg[1]
      while not io.open(%q) do keeper.sleep(0.01) end   -- everyone starts together
      local r = assert(st:update_index(function(doc)
        keeper.sleep(0.02)          -- between the read and the write: writers collide
        doc.runs[me] = { writer = me }
        return doc
      end))
      io.write(r.attempts)]], srv.bucket, srv.endpoint, srv.access_key, srv.secret_key, srv.tls.pin_sha256,
      tmp .. "/go"))
    local procs = {}
    for i = 1, 20 do
      procs[i] = helpers.spawn(string.format("%s run %s w%02d", helpers.shquote(helpers.sbot_bin),
        helpers.shquote(script), i))
    end
    keeper.sleep(0.5)
    helpers.write_file(tmp .. "/go", "")
    local attempts = 0
    for i, p in ipairs(procs) do
      for _ = 1, 600 do
        if not p:alive() then break end
        keeper.sleep(0.05)
      end
      local out = p:output()
      local n = tonumber(out:match("^(%d+)$"))
      assert(n, "writer " .. i .. ": " .. out)
      attempts = attempts + n
    end
    local index = json.decode(assert(c:get_object { bucket = srv.bucket, key = "crowd/metadata/index.json" }).body)
    local n = 0
    for k in pairs(index.runs) do n = n + 1; assert.matches("^w%d%d$", k) end
    assert.are.equal(20, n)          -- zero lost entries
    assert.is_true(attempts > 20, "the writers never collided (" .. attempts .. " attempts)")
  end)

  it("lets one run per server hold it across machines: a second run is refused by the S3 lease", function()
    local store = "s3://" .. srv.bucket .. "/records"
    -- two "machines": each its own state dir, so the local lock files do not see each other
    helpers.write_file(tmp .. "/site2.lua", string.format([[
      local site = dofile(%q)
      site.components.test_kv.slow_discover = 4
      return site]], tmp .. "/site.lua"))
    os.execute("chmod 600 " .. helpers.shquote(tmp .. "/site2.lua"))
    local first = helpers.spawn(string.format("env -C %s AWS_ACCESS_KEY_ID= %s run %s --site %s --store %s " ..
      "--state-dir %s --runs-dir %s", helpers.shquote(tmp), helpers.shquote(helpers.sbot_bin),
      helpers.shquote(helpers.source_dir .. "/tests/support/workflows/kv.lua"), helpers.shquote(tmp .. "/site2.lua"),
      store, helpers.shquote(tmp .. "/m1"), helpers.shquote(tmp .. "/runs1")))
    local lease_key = "records/.sbot/locks/s1.lease"
    local held = false
    for _ = 1, 200 do
      if c:head_object { bucket = srv.bucket, key = lease_key } then held = true; break end
      keeper.sleep(0.05)
    end
    assert.is_true(held, first:output())
    -- store.lock_info: who holds it, without taking it
    local sbstore = require "sbot.store"
    local lurl = "s3://" .. srv.bucket .. "/records?endpoint=" .. srv.endpoint
    local lopts = { access_key = srv.access_key, secret_key = srv.secret_key, tls = srv.tls }
    local info = assert(sbstore.lock_info(lurl, lopts, "s1"))
    assert.is_falsy(info.stale)
    assert.are.equal(require("sbot.sys").hostname(), info.holder.host)
    assert.is_string(info.holder.run_id)
    assert.are.equal("s1", info.holder.lock)
    assert.is_false(sbstore.lock_info(lurl, lopts, "s2"), "nobody holds s2")
    assert.is_false(sbstore.lock_info("file://" .. tmp .. "/files", nil, "s1"), "not an S3 store")
    local second = sbot_run { "--store", store, "--state-dir", tmp .. "/m2", "--json" }
    assert.are.equal(1, second.code)
    local rec = json.decode(second.stdout)
    assert.are.equal("(lock)", rec.results[1].component)
    assert.matches("server s1 is locked by pid %d+ on host .* %(run .*%)", rec.results[1].error)
    for _ = 1, 300 do
      if not first:alive() then break end
      keeper.sleep(0.05)
    end
    assert.matches("run .* ok", first:output())
    -- released: the next run gets it
    assert.are.equal("NoSuchKey", select(3, c:head_object { bucket = srv.bucket, key = lease_key }))
    assert.is_false(sbstore.lock_info(lurl, lopts, "s1"))
    local third = sbot_run { "--store", store, "--state-dir", tmp .. "/m2" }
    assert.are.equal(0, third.code, third.stderr)
  end)
end)
