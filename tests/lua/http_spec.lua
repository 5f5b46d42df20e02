-- sbot.http against real loopback servers started here (tests/servers/*.py).
local http = require "sbot.http"
local json = require "sbot.json"
local log = require "sbot.log"
local helpers = require "helpers"
local servers = require "test_servers"

local function elapsed_since(t0) return helpers.now() - t0 end

describe("sbot.http", function()
  local srv
  setup(function() srv = servers.httpbin() end)
  teardown(function() if srv then srv:stop() end end)

  describe("request", function()
    it("returns status, lower-cased headers, body, url, attempts and timings", function()
      local r = assert(http.get(srv.url("/echo?x=1"), { headers = { ["X-Test"] = "yes", ["X-Num"] = 7 } }))
      assert.are.equal(200, r.status)
      assert.are.equal("application/json", r.headers["content-type"])
      local echo = json.decode(r.body)
      assert.are.equal("GET", echo.method)
      assert.are.equal("yes", echo.headers["x-test"])
      assert.are.equal("7", echo.headers["x-num"])
      assert.are.equal("1", echo.query.x)
      assert.are.equal(srv.url("/echo?x=1"), r.url)
      assert.are.equal(1, r.attempts)
      for _, k in ipairs({ "dns", "connect", "tls", "ttfb", "total" }) do
        assert.is_number(r.timings[k], k)
      end
      assert.is_true(r.timings.total >= r.timings.ttfb)
    end)

    it("keeps repeated headers as an array in order", function()
      local r = assert(http.get(srv.url("/cookies")))
      assert.are.same({ "a=1", "b=2" }, r.headers["set-cookie"])
    end)

    it("treats an HTTP error status as data", function()
      local r, err = http.get(srv.url("/status/404"))
      assert.is_nil(err)
      assert.are.equal(404, r.status)
      assert.are.equal("status 404", r.body)
      r = assert(http.delete(srv.url("/status/500"), { retries = false }))
      assert.are.equal(500, r.status)
    end)

    it("sends bodies with every method and Content-Length: 0 for an empty POST", function()
      local r = assert(http.post(srv.url("/echo"), { body = '{"a":1}', headers = { ["Content-Type"] = "application/json" } }))
      local echo = json.decode(r.body)
      assert.are.equal("POST", echo.method)
      assert.are.equal('{"a":1}', echo.body)
      assert.are.equal("application/json", echo.headers["content-type"])
      assert.is_nil(echo.headers["expect"])
      echo = json.decode(assert(http.patch(srv.url("/echo"), { body = "p" })).body)
      assert.are.equal("PATCH", echo.method)
      assert.are.equal("p", echo.body)
      assert.is_nil(echo.headers["content-type"])
      echo = json.decode(assert(http.post(srv.url("/echo"))).body)
      assert.are.equal("0", echo.headers["content-length"])
      echo = json.decode(assert(http.request { method = "put", url = srv.url("/echo"), body = "x" }).body)
      assert.are.equal("PUT", echo.method)
      local h = assert(http.head(srv.url("/echo")))
      assert.are.equal(200, h.status)
      assert.are.equal("", h.body)
    end)

    it("sends basic auth and reveals secret objects only on the wire", function()
      local secret = require("sbot.secret").new("s3cr3t-value")
      local r = assert(http.get(srv.url("/echo"), {
        headers = { ["X-Auth-Token"] = secret }, basic_auth = { user = "root", password = "calvin" } }))
      local echo = json.decode(r.body)
      assert.are.equal("s3cr3t-value", echo.headers["x-auth-token"])
      assert.are.equal("Basic " .. require("sbot.crypto").base64_encode("root:calvin"), echo.headers["authorization"])
      -- registered with the redactor
      assert.are.equal("token <redacted>", log.redact("token s3cr3t-value"))
    end)

    it("reuses connections (keep-alive) unless connection_close is set", function()
      local a = json.decode(assert(http.get(srv.url("/echo"))).body)
      local b = json.decode(assert(http.get(srv.url("/echo"))).body)
      assert.are.equal(a.peer_port, b.peer_port)
      local c = json.decode(assert(http.get(srv.url("/echo"), { connection_close = true })).body)
      local d = json.decode(assert(http.get(srv.url("/echo"), { connection_close = true })).body)
      assert.are_not.equal(c.peer_port, d.peer_port)
      assert.are.equal("close", d.headers["connection"])
    end)

    it("fails with too_large past max_body", function()
      local r, err, code = http.get(srv.url("/download/100000?id=big"), { max_body = 1000 })
      assert.is_nil(r)
      assert.are.equal("too_large", code) -- the word sbot.ws uses for a message over max_message
      assert.matches("^GET http://127%.0%.0%.1:%d+/download/100000%?id=big: response body larger than max_body", err)
    end)

    it("returns nil, message, code on transport failures", function()
      local port = helpers.free_port()
      local r, err, code = http.get("http://127.0.0.1:" .. port .. "/x", { retries = false })
      assert.is_nil(r)
      assert.are.equal("connect", code)
      assert.matches("^GET http://127%.0%.0%.1:" .. port .. "/x: cannot connect", err)
      r, err, code = http.get("http://no-such-host.invalid/", { retries = false })
      assert.is_nil(r)
      assert.are.equal("resolve", code) -- the word sbot.ws uses for the same failure
      assert.matches("cannot resolve host", err)
    end)

    it("raises on misuse, naming the option", function()
      assert.has_error(function() http.request { url = srv.url("/"), timout = 3 } end,
        "http.request: unknown option 'timout'")
      assert.has_error(function() http.get(srv.url("/"), { timeout = "3" }) end,
        "http.request: 'timeout' must be a number, got string")
      assert.has_error(function() http.request { method = "GET" } end, "http.request: 'url' is missing")
      assert.has_error(function() http.get(srv.url("/"), { connect_timeout = -1 }) end,
        "http.request: 'connect_timeout' must be a number >= 0.001, got -1")
      assert.has_error(function() http.get(srv.url("/"), { retries = { max = 1, bsae = 1 } }) end,
        "http.request: retries: unknown key 'bsae'")
      assert.has_error(function() http.get("https://127.0.0.1:9/", { tls = { insecure = true, ca_file = "x" } }) end,
        "http.request: tls.insecure: insecure = true cannot be combined with ca_file or pin_sha256")
      assert.has_error(function() http.batch({ { url = srv.url("/") } }, { per_host = 0 }) end,
        "http.batch: options: 'per_host' must be a number >= 1, got 0")
      assert.has_error(function() http.get("ftp://x/") end,
        "http.request: URL 'ftp://x/' must start with http:// or https://")
      assert.has_error(function() http.get(srv.url("/"), { body = "a", body_file = "/etc/hostname" }) end,
        "http.request: give either 'body' or 'body_file', not both")
      assert.has_error(function() http.get(srv.url("/"), { headers = { ["X-A"] = "a\r\nB: c" } }) end,
        "http.request: headers.X-A contains a line break or NUL byte")
      assert.has_error(function() http.get("https://127.0.0.1:9/", { tls = { pin_sha256 = "short" } }) end,
        "http.request: tls.pin_sha256: 'short' is not a SHA-256 public-key pin: give its 44 base64 characters "
        .. "ending in '=' (optionally after sha256//) or its 64 hex digits (colons allowed between bytes)")
      assert.has_error(function() http.get(srv.url("/"), { url = "x" }) end,
        "http.get: pass the URL as the first argument, not 'url' or 'method' in the options")
      assert.has_error(function() http.batch({ { url = srv.url("/") }, { url = 5 } }) end,
        "http.batch: request #2: 'url' must be a string, got number")
    end)

    it("streams a 2xx body to output_file and keeps error bodies in memory", function()
      local dir = helpers.tmpdir("http")
      local out = dir .. "/dl.bin"
      local r = assert(http.get(srv.url("/download/300000?id=small"), { output_file = out }))
      assert.are.equal(200, r.status)
      assert.are.equal(out, r.file)
      assert.is_nil(r.body)
      local crypto = require "sbot.crypto"
      local want = http.get(srv.url("/hash/small")).body
      assert.are.equal(want, crypto.hex(assert(crypto.sha256_file(out))))
      local missing = dir .. "/missing.bin"
      r = assert(http.get(srv.url("/status/404"), { output_file = missing }))
      assert.are.equal(404, r.status)
      assert.are.equal("status 404", r.body)
      assert.is_nil(io.open(missing, "rb"))
      assert.is_nil(io.open(missing .. ".part", "rb"))
      os.execute("rm -rf " .. helpers.shquote(dir))
    end)

    it("uploads body_file and reports a missing body_file as a file error", function()
      local dir = helpers.tmpdir("http")
      helpers.write_file(dir .. "/up.bin", string.rep("0123456789", 50000))
      local r = assert(http.put(srv.url("/upload"), { body_file = dir .. "/up.bin" }))
      local got = json.decode(r.body)
      assert.are.equal(500000, got.bytes)
      local crypto = require "sbot.crypto"
      assert.are.equal(crypto.hex(crypto.sha256(string.rep("0123456789", 50000))), got.sha256)
      -- a byte range of the file (S3 multipart parts)
      r = assert(http.put(srv.url("/upload"), { body_file = dir .. "/up.bin", body_offset = 5, body_length = 20 }))
      got = json.decode(r.body)
      assert.are.equal(20, got.bytes)
      assert.are.equal(crypto.hex(crypto.sha256("56789012345678901234")), got.sha256)
      assert.are.equal(crypto.hex(crypto.sha256("56789012345678901234")),
        crypto.hex(crypto.sha256_file(dir .. "/up.bin", 5, 20)))
      r = assert(http.put(srv.url("/upload"), { body_file = dir .. "/up.bin", body_offset = 499990 }))
      assert.are.equal(10, json.decode(r.body).bytes)
      local _, rerr, rcode = http.put(srv.url("/upload"), { body_file = dir .. "/up.bin", body_offset = 499990, body_length = 11 })
      assert.are.equal("ERANGE", rcode) -- a local file's failure: an errno name
      assert.matches("is shorter than body_offset %+ body_length %(500001%)", rerr)
      assert.has_error(function() http.put(srv.url("/upload"), { body = "x", body_offset = 1 }) end,
        "http.request: 'body_offset' and 'body_length' need 'body_file'")
      local _, err, code = http.put(srv.url("/upload"), { body_file = dir .. "/nope" })
      assert.are.equal("ENOENT", code)
      assert.matches("cannot open body_file .*/nope: No such file", err)
      os.execute("rm -rf " .. helpers.shquote(dir))
    end)
  end)

  describe("progress", function()
    it("is throttled and ends with the final count", function()
      local dir = helpers.tmpdir("http")
      local calls, last = 0, nil
      local t0 = helpers.now()
      local r = assert(http.get(srv.url("/download/20000000?id=p"), {
        output_file = dir .. "/p.bin",
        progress = function(done, total) calls = calls + 1; last = { done, total } end }))
      local secs = elapsed_since(t0)
      assert.are.equal(200, r.status)
      assert.are.same({ 20000000, 20000000 }, last)
      assert.is_true(calls >= 1)
      assert.is_true(calls <= math.ceil(secs / 0.25) + 2, calls .. " calls in " .. secs .. " s")
      os.execute("rm -rf " .. helpers.shquote(dir))
    end)

    it("aborts the transfer on a callback error, cleans up, then raises it", function()
      -- 20 kB dripped over 1 s by the server: the throttled callback (4 per second) runs while
      -- the transfer is under way on any machine, however fast
      local dir = helpers.tmpdir("http")
      local out = dir .. "/abort.bin"
      local seen
      local ok, err = pcall(http.get, srv.url("/drip/20000?chunks=11&ms=100"), {
        output_file = out, progress = function(done, total)
          if done < total then seen = done; error("stop here") end end })
      assert.is_false(ok)
      assert.matches("stop here", tostring(err))
      assert.is_true(seen > 0 and seen < 20000, tostring(seen))
      assert.is_nil(io.open(out .. ".part", "rb"))
      assert.is_nil(io.open(out, "rb"))
      -- the interpreter's HTTP state is usable again
      assert.are.equal(200, assert(http.get(srv.url("/status/200"))).status)
      os.execute("rm -rf " .. helpers.shquote(dir))
    end)

    it("leaves no output_file when the final progress call raises", function()
      -- the last call (done == total) came after the rename: the call raised but the file stayed
      local dir = helpers.tmpdir("http")
      local out = dir .. "/final.bin"
      local calls = {}
      local ok, err = pcall(http.get, srv.url("/download/3000?id=final"), {
        output_file = out, progress = function(done, total)
          calls[#calls + 1] = done
          if done == total then error("refuse the end") end end })
      assert.is_false(ok)
      assert.matches("refuse the end", tostring(err))
      assert.are.equal(3000, calls[#calls])
      assert.is_nil(io.open(out .. ".part", "rb"))
      assert.is_nil(io.open(out, "rb"))
      -- an empty body: the same
      ok = pcall(http.get, srv.url("/drip/0?chunks=1"), { output_file = out,
        progress = function() error("no") end })
      assert.is_false(ok)
      assert.is_nil(io.open(out, "rb"))
      assert.is_nil(io.open(out .. ".part", "rb"))
      -- and when it does not raise, the file is there
      assert(http.get(srv.url("/download/3000?id=final2"), { output_file = out, progress = function() end }))
      assert.are.equal(3000, #helpers.read_file(out))
      os.execute("rm -rf " .. helpers.shquote(dir))
    end)

    it("raises a retry_if error after releasing the batch, which keeps working", function()
      local ok, err = pcall(http.batch, {
        { url = srv.url("/status/503"), retry_if = function() error("bad predicate") end },
        { url = srv.url("/download/50000000?id=bg"), max_body = 100000000 },
      })
      assert.is_false(ok)
      assert.matches("bad predicate", tostring(err))
      local res = http.batch({ { url = srv.url("/status/204") }, { url = srv.url("/status/202") } })
      assert.are.equal(204, res[1].status)
      assert.are.equal("", res[1].body)
      assert.are.equal(202, res[2].status)
    end)

    it("refuses a request started from inside a callback", function()
      local ok, err, e2, e3 = pcall(http.get, srv.url("/download/2000000?id=nest"), {
        progress = function() http.get(srv.url("/echo")) end })
      assert.is_false(ok, tostring(err) .. " " .. tostring(e2) .. " " .. tostring(e3))
      assert.matches("cannot start a request from inside a progress or retry_if callback", tostring(err))
    end)
  end)

  describe("retries", function()
    local fast = { max = 3, base = 0.05, cap = 5 }

    it("retries GET on 503 with backoff, honouring Retry-After", function()
      local t0 = helpers.now()
      local r = assert(http.get(srv.url("/flaky/get1?fail=2"), { retries = fast }))
      local secs = elapsed_since(t0)
      assert.are.equal(200, r.status)
      assert.are.equal(3, r.attempts)
      assert.are.equal("ok after 3", r.body)
      local times = json.decode(http.get(srv.url("/attempts/get1")).body)
      assert.are.equal(3, #times)
      assert.is_true(times[2] - times[1] >= 0.95, "Retry-After: 1 was not honoured")
      assert.is_true(secs >= 0.95)
    end)

    it("retries GET on 429, 502 and 504 as on 503, and not on other statuses", function()
      local quick = { max = 2, base = 0.01, cap = 0.05 }
      for _, status in ipairs({ 429, 502, 503, 504 }) do
        local r = assert(http.get(srv.url("/flaky/s" .. status .. "?fail=1&after=none&status=" .. status),
          { retries = quick }))
        assert.are.equal(200, r.status, status)
        assert.are.equal(2, r.attempts, status)
      end
      for _, status in ipairs({ 500, 501, 404, 408 }) do
        local r = assert(http.get(srv.url("/flaky/n" .. status .. "?fail=1&after=none&status=" .. status),
          { retries = quick }))
        assert.are.equal(status, r.status)
        assert.are.equal(1, r.attempts, status)
      end
    end)

    it("honours Retry-After given as an HTTP date", function()
      -- the date is 2 s ahead at second resolution: the wait is over 1 s, far above the 10 ms backoff
      local r = assert(http.get(srv.url("/flaky/date1?fail=1&after=date:2"), { retries = { max = 1, base = 0.01, cap = 10 } }))
      assert.are.equal(200, r.status)
      assert.are.equal(2, r.attempts)
      local times = json.decode(http.get(srv.url("/attempts/date1")).body)
      assert.is_true(times[2] - times[1] >= 1.0, "waited only " .. (times[2] - times[1]) .. " s")
    end)

    it("caps a Retry-After wait at retries.cap", function()
      -- an hour asked for, in seconds or as a date; cap 0.3 s: the retry comes after about
      -- 0.3 s. In a child process bounded by sys.spawn's timeout, so that an uncapped wait
      -- fails the test in 60 s instead of hanging it for an hour.
      local dir = helpers.tmpdir("http-cap")
      helpers.write_file(dir .. "/cap.lua", [[
local http = require "sbot.http"
local r = assert(http.get(..., { retries = { max = 1, base = 0.01, cap = 0.3 } }))
print(r.status, r.attempts)
]])
      for _, after in ipairs({ "3600", "date:3600" }) do
        local id = "cap" .. after:gsub("%W", "")
        local run = assert(require("sbot.sys").spawn { argv = { helpers.sbot_bin, "run", dir .. "/cap.lua",
          srv.url("/flaky/" .. id .. "?fail=1&after=" .. after) }, timeout = 60 })
        assert.is_nil(run.timed_out, after .. ": the wait was not capped")
        assert.are.equal("200\t2\n", run.stdout, run.stderr)
        local times = json.decode(http.get(srv.url("/attempts/" .. id)).body)
        assert.is_true(times[2] - times[1] >= 0.25, after .. ": Retry-After was not honoured up to the cap")
      end
    end)

    it("gives up after max retries and returns the last answer", function()
      local r = assert(http.get(srv.url("/flaky/get2?fail=10"), { retries = { max = 1, base = 0.01, cap = 0.05 } }))
      assert.are.equal(503, r.status)
      assert.are.equal(2, r.attempts)
    end)

    it("does not retry POST or PATCH unless asked", function()
      local r = assert(http.post(srv.url("/flaky/post1?fail=2"), { body = "{}", retries = fast }))
      assert.are.equal(503, r.status)
      assert.are.equal(1, r.attempts)
      r = assert(http.patch(srv.url("/flaky/patch1?fail=1"), { body = "{}", retries = fast }))
      assert.are.equal(1, r.attempts)
      r = assert(http.post(srv.url("/flaky/post2?fail=1"), { body = "{}", retries = fast, retry_unsafe = true }))
      assert.are.equal(200, r.status)
      assert.are.equal(2, r.attempts)
    end)

    it("lets retry_if decide, for answers and transport failures", function()
      local seen = {}
      local r = assert(http.post(srv.url("/flaky/post3?fail=1"), { body = "{}", retries = { max = 2, base = 0.01, cap = 0.05 },
        retry_if = function(resp) seen[#seen + 1] = resp.status; return resp.status == 503 end }))
      assert.are.equal(2, r.attempts)
      assert.are.same({ 503, 200 }, seen) -- asked after every attempt that could be retried
      local args
      local port = helpers.free_port()
      local _, _, code = http.get("http://127.0.0.1:" .. port .. "/", { retries = { max = 1, base = 0.01, cap = 0.01 },
        retry_if = function(...) args = table.pack(...); return false end })
      assert.are.equal("connect", code)
      assert.is_nil(args[1])
      assert.matches("cannot connect", args[2])
      assert.are.equal("connect", args[3])
    end)

    it("retries connect failures of safe methods", function()
      local port = helpers.free_port()
      local _, err, code = http.get("http://127.0.0.1:" .. port .. "/", { retries = { max = 2, base = 0.01, cap = 0.02 } })
      assert.are.equal("connect", code)
      assert.matches("cannot connect", err)
      local _, _, code2 = http.post("http://127.0.0.1:" .. port .. "/", { retries = { max = 2, base = 5, cap = 5 } })
      assert.are.equal("connect", code2) -- no 5 s backoff: POST is not retried
    end)
  end)

  describe("timeouts", function()
    it("fires the total timeout on a server that never answers", function()
      local bh = servers.start("blackhole.py", { "--mode", "silent" }, { wait_output = true })
      local r, err, code = http.get(bh.url("/"), { timeout = 0.5, retries = { max = 2, base = 0.01, cap = 0.01 } })
      os.execute("sleep 0.2")
      local _, accepted = bh:output():gsub("accepted", "")
      bh:stop()
      assert.is_nil(r)
      assert.are.equal("timeout", code)
      assert.matches("^GET http://127%.0%.0%.1:%d+/: timed out after 500 ms %(timeout%)", err)
      assert.are.equal(1, accepted) -- not retried: the request may have reached the server
    end)

    it("fires the connect timeout when SYNs go unanswered", function()
      local bh = servers.start("blackhole.py", { "--mode", "nosyn" }, { wait_output = true })
      local r, err, code = http.get(bh.url("/"), { connect_timeout = 0.3, retries = false })
      bh:stop()
      assert.is_nil(r)
      assert.are.equal("timeout", code)
      assert.matches("connect timed out after 300 ms %(connect_timeout%)", err)
    end)

    it("calls a timeout on a reused connection a total timeout, not a connect timeout", function()
      -- the request went out on a kept-alive connection: it may have been acted upon
      assert.are.equal(200, assert(http.get(srv.url("/status/200"))).status)
      local _, err, code = http.post(srv.url("/never"), { body = "x", timeout = 0.3, retries = false })
      assert.are.equal("timeout", code)
      assert.matches("timed out after 300 ms %(timeout%)", err)
      assert.is_nil(err:find("connect_timeout", 1, true))
    end)

    it("also fires on the silent endpoint of an HTTP server", function()
      local _, err, code = http.get(srv.url("/never"), { timeout = 0.3 })
      assert.are.equal("timeout", code)
      assert.matches("timed out after 300 ms", err)
    end)
  end)

  describe("batch", function()
    local multi
    setup(function() multi = servers.httpbin({ binds = { "127.0.0.1", "127.0.0.2" } }) end)
    teardown(function() if multi then multi:stop() end end)

    it("runs 200 requests with at most per_host connections per host, results in order", function()
      local reqs = {}
      for i = 1, 200 do
        local host = i % 2 == 0 and "127.0.0.2" or "127.0.0.1"
        reqs[i] = { url = multi.url("/conc?ms=10&i=" .. i, host) }
      end
      local bad = helpers.free_port()
      reqs[57] = { url = "http://127.0.0.1:" .. bad .. "/", retries = false }
      local res = http.batch(reqs, { per_host = 2, total = 64 })
      assert.are.equal(200, #res)
      for i = 1, 200 do
        if i == 57 then
          assert.is_nil(res[i][1])
          assert.matches("cannot connect", res[i][2])
          assert.are.equal("connect", res[i][3])
          assert.are.equal("connect", res[i].code)
        else
          assert.are.equal(200, res[i].status, "request " .. i)
          assert.are.equal("ok " .. i, res[i].body)
        end
      end
      local stats = json.decode(http.get(multi.url("/stats")).body)
      for _, host in ipairs({ "127.0.0.1", "127.0.0.2" }) do
        local s = stats[host]
        assert.is_true(s.max_connections <= 2, host .. " saw " .. s.max_connections .. " connections")
        assert.are.equal(2, s.max_inflight, host .. " in flight")
      end
      assert.are.equal(199, stats.all.requests)
    end)

    it("caps the total in flight", function()
      local port = multi.port
      local before = json.decode(http.get(multi.url("/stats")).body).all.requests
      local reqs = {}
      for i = 1, 24 do
        reqs[i] = { url = string.format("http://127.0.0.%d:%d/conc?ms=20&i=%d", i % 2 + 1, port, i) }
      end
      -- a fresh server to read a clean maximum
      local s2 = servers.httpbin({ binds = { "127.0.0.1", "127.0.0.2" } })
      for i = 1, 24 do reqs[i].url = reqs[i].url:gsub(":" .. port .. "/", ":" .. s2.port .. "/") end
      local res = http.batch(reqs, { per_host = 8, total = 3 })
      local stats = json.decode(http.get(s2.url("/stats")).body)
      s2:stop()
      assert.are.equal(24, #res)
      assert.are.equal(3, stats.all.max_inflight)
      assert.is_true(before >= 199)
    end)

    it("retries inside a batch without blocking the others", function()
      local res = http.batch({
        { url = multi.url("/flaky/b1?fail=1"), retries = { max = 2, base = 0.01, cap = 0.05 } },
        { url = multi.url("/status/201") },
        { url = multi.url("/flaky/b2?fail=5"), retries = false },
      })
      assert.are.equal(200, res[1].status)
      assert.are.equal(2, res[1].attempts)
      assert.are.equal(201, res[2].status)
      assert.are.equal(503, res[3].status)
      assert.are.equal(1, res[3].attempts)
      assert.are.same({}, http.batch({}))
    end)
  end)

  describe("TLS", function()
    local tls_srv, cert, pin
    setup(function()
      local dir = helpers.tmpdir("tls")
      local key
      cert, key, pin = servers.make_cert(dir)
      tls_srv = servers.httpbin({ tls = { cert, key } })
    end)
    teardown(function() if tls_srv then tls_srv:stop() end end)

    it("fails verification by default with a message that says how to fix it", function()
      local r, err, code = http.get(tls_srv.url("/echo"))
      assert.is_nil(r)
      assert.are.equal("tls", code)
      assert.matches("^GET https://127%.0%.0%.1:%d+/echo: TLS certificate verification failed", err)
      assert.matches("tls = {ca_file = ", err, 1, true)
      assert.matches("tls = {pin_sha256 = ", err, 1, true)
    end)

    it("succeeds with ca_file", function()
      local r = assert(http.get(tls_srv.url("/status/200"), { tls = { ca_file = cert } }))
      assert.are.equal(200, r.status)
      assert.is_true(r.timings.tls >= 0)
    end)

    it("succeeds with the right pin_sha256 and fails with a wrong one", function()
      local r = assert(http.get(tls_srv.url("/status/200"), { tls = { pin_sha256 = pin } }))
      assert.are.equal(200, r.status)
      r = assert(http.get(tls_srv.url("/status/200"), { tls = { pin_sha256 = "sha256//" .. pin, ca_file = cert } }))
      assert.are.equal(200, r.status)
      local wrong = require("sbot.crypto").base64_encode(string.rep("\0", 32))
      local r2, err, code = http.get(tls_srv.url("/status/200"), { tls = { pin_sha256 = wrong } })
      assert.is_nil(r2)
      assert.are.equal("tls", code)
      assert.matches("does not match tls.pin_sha256", err)
    end)

    it("allows explicit insecure mode with one warning per host", function()
      local dir = helpers.tmpdir("tls")
      local script = dir .. "/insecure.lua"
      helpers.write_file(script, string.format([[
        local http = require "sbot.http"
        for _ = 1, 3 do assert(http.get(%q, { tls = { insecure = true } })) end
        print("done")
      ]], tls_srv.url("/status/200")))
      local run = helpers.sbot({ "run", script })
      assert.are.equal(0, run.code, run.stderr)
      local _, warnings = run.stderr:gsub("TLS verification is disabled for https://127%.0%.0%.1:%d+", "")
      assert.are.equal(1, warnings, run.stderr)
      os.execute("rm -rf " .. helpers.shquote(dir))
    end)
  end)

  describe("debug log", function()
    it("logs method, URL, status, ms and attempts without secrets", function()
      local dir = helpers.tmpdir("log")
      local script = dir .. "/redact.lua"
      helpers.write_file(script, string.format([[
        local http = require "sbot.http"
        local log = require "sbot.log"
        log.add_secret("registered-secret-42")
        local r = assert(http.get(%q .. "?X-Amz-Signature=sig-value-99&X-Amz-Credential=cred-77&q=registered-secret-42", {
          headers = { Authorization = "Bearer auth-token-abc", ["X-Auth-Token"] = "xauth-555",
                      Cookie = "session=cookie-666", ["x-amz-security-token"] = "amz-888",
                      ["X-Custom"] = "registered-secret-42" } }))
        local echo = require("sbot.json").decode(r.body)
        -- the server did receive the real values
        assert(echo.headers.authorization == "Bearer auth-token-abc")
        assert(echo.headers["x-custom"] == "registered-secret-42")
        assert(echo.query["X-Amz-Signature"] == "sig-value-99")
        print(r.url)
      ]], srv.url("/echo")))
      local run = helpers.sbot({ "--log-level", "debug", "run", script })
      assert.are.equal(0, run.code, run.stderr)
      local all = run.stdout .. run.stderr
      for _, v in ipairs({ "auth-token-abc", "xauth-555", "cookie-666", "amz-888", "registered-secret-42",
                           "sig-value-99", "cred-77" }) do
        assert.is_nil(all:find(v, 1, true), v .. " leaked:\n" .. all)
      end
      assert.matches("http GET http://127%.0%.0%.1:%d+/echo%?X%-Amz%-Signature=<redacted>&X%-Amz%-Credential=<redacted>&q=<redacted> 200 %d+ ms attempts=1", run.stderr)
      assert.matches("Authorization: <redacted>", run.stderr, 1, true)
      assert.matches("X-Auth-Token: <redacted>", run.stderr, 1, true)
      -- one line per request (each line is a write to the run's log), with both header lists
      local lines = {}
      for line in run.stderr:gmatch("[^\n]+") do
        if line:find("http GET http://127.0.0.1", 1, true) then lines[#lines + 1] = line end
      end
      assert.are.equal(1, #lines, run.stderr)
      assert.matches(" attempts=1; request headers: .*Authorization: <redacted>.*; response headers: .*Content%-Type: ",
        lines[1])
      os.execute("rm -rf " .. helpers.shquote(dir))
    end)
  end)
end)
