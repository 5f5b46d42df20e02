-- The sbot command line: exit codes, error reports, arg, help and version.
local h = require "helpers"

local function script(body)
  local dir = h.tmpdir("cli")
  local path = dir .. "/script.lua"
  h.write_file(path, body)
  return path
end

describe("sbot run", function()
  it("passes arguments as arg and ... like lua does", function()
    local path = script('print(arg[0], arg[1], arg[2], #arg, select("#", ...), ...)')
    local r = h.sbot({ "run", path, "one", "two words" })
    assert.are.equal(0, r.code)
    assert.are.equal(path .. "\tone\ttwo words\t2\t2\tone\ttwo words\n", r.stdout)
  end)

  it("reports a runtime error as sbot: FILE:LINE: message with a traceback, exit 1", function()
    local path = script('local function f()\n  error("disk on fire")\nend\nf()\n')
    local r = h.sbot({ "run", path })
    assert.are.equal(1, r.code)
    assert.matches("^sbot: " .. path:gsub("%p", "%%%0") .. ":2: disk on fire\n", r.stderr)
    assert.matches("stack traceback:", r.stderr)
    assert.matches("in local 'f'", r.stderr)
  end)

  it("names a long script path whole (Lua itself would shorten it to ...tail)", function()
    local dir = h.tmpdir("cli-a-directory-with-a-long-name-to-pass-lua-idsize-of-sixty")
    local path = dir .. "/script-with-a-long-name.lua"
    h.write_file(path, 'error("long path")')
    assert.is_true(#path > 60)
    local r = h.sbot({ "run", path })
    assert.are.equal(1, r.code)
    assert.matches("^sbot: " .. path:gsub("%p", "%%%0") .. ":1: long path\n", r.stderr)
    h.write_file(path, "x = = 1")
    r = h.sbot({ "run", path })
    assert.are.equal(2, r.code)
    assert.matches("^sbot: " .. path:gsub("%p", "%%%0") .. ":1: unexpected symbol", r.stderr)
  end)

  it("reports a non-string error object", function()
    local r = h.sbot({ "run", script("error({code = 1})") })
    assert.are.equal(1, r.code)
    assert.matches("^sbot: %(error object is a table value%)", r.stderr)
  end)

  it("exits 2 with a clear message for a missing file", function()
    local r = h.sbot({ "run", "/nonexistent/workflow.lua" })
    assert.are.equal(2, r.code)
    assert.are.equal("sbot run: cannot open /nonexistent/workflow.lua: No such file or directory\n", r.stderr)
  end)

  it("exits 2 for an unreadable file (a directory)", function()
    local dir = h.tmpdir("cli-dir")
    local r = h.sbot({ "run", dir })
    assert.are.equal(2, r.code)
    assert.matches("^sbot: cannot read " .. dir:gsub("%p", "%%%0"), r.stderr)
  end)

  it("exits 2 for a syntax error, naming file and line", function()
    local path = script("local x = \nx = = 1\n")
    local r = h.sbot({ "run", path })
    assert.are.equal(2, r.code)
    assert.matches(":2: unexpected symbol near '='", r.stderr, 1, true)
  end)

  it("exits 2 without FILE", function()
    local r = h.sbot({ "run" })
    assert.are.equal(2, r.code)
    assert.matches("missing FILE", r.stderr)
  end)

  it("honours os.exit(n)", function()
    assert.are.equal(7, h.sbot({ "run", script("os.exit(7)") }).code)
    assert.are.equal(0, h.sbot({ "run", script("os.exit(true)") }).code)
    assert.are.equal(1, h.sbot({ "run", script("os.exit(false)") }).code)
  end)

  it("redacts registered secrets from error messages", function()
    local r = h.sbot({ "run", script('require("sbot.log").add_secret("pa55word")\nerror("login failed for pa55word")') })
    assert.are.equal(1, r.code)
    assert.is_nil(r.stderr:find("pa55word", 1, true))
    assert.matches("login failed for <redacted>", r.stderr, 1, true)
  end)

  it("finds the in-tree Lua library and the system Lua packages", function()
    local r = h.sbot({ "run", script([[
      local json = require "sbot.json"
      local argparse = require "argparse"
      print(package.searchpath("sbot.json", package.path), type(argparse))]]) })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(h.source_dir .. "/lua/sbot/json.lua\ttable\n", r.stdout)
  end)
end)

describe("global options and logging", function()
  it("--log-json writes JSON lines to stderr, -v enables debug", function()
    local r = h.sbot({ "-v", "--log-json", "run",
      script('local log = require "sbot.log"\nlog.debug("d", {server = "r630-01"})\nlog.info("i")') })
    assert.are.equal(0, r.code, r.stderr)
    local json = require "sbot.json"
    local lines = {}
    for line in r.stderr:gmatch("[^\n]+") do lines[#lines + 1] = assert(json.decode(line)) end
    assert.are.equal(2, #lines)
    assert.are.same({ "debug", "d", "r630-01" }, { lines[1].level, lines[1].msg, lines[1].server })
    assert.are.equal("info", lines[2].level)
  end)

  it("defaults to info and drops debug lines", function()
    local r = h.sbot({ "run", script('local log = require "sbot.log"\nlog.debug("hidden")\nlog.warn("shown")') })
    assert.is_nil(r.stderr:find("hidden", 1, true))
    assert.matches("WARN  shown", r.stderr, 1, true)
  end)

  it("rejects a bad log level with exit 2", function()
    local r = h.sbot({ "--log-level", "loud", "run", script("") })
    assert.are.equal(2, r.code)
    assert.matches("sbot: --log-level: unknown level 'loud' (expected debug, info, warn, error or off)",
      r.stderr, 1, true)
  end)
end)

describe("commands", function()
  it("an unknown command prints usage to stderr and exits 2", function()
    local r = h.sbot({ "frobnicate" })
    assert.are.equal(2, r.code)
    assert.are.equal("", r.stdout)
    assert.matches("^sbot: unknown command 'frobnicate'\n\nusage: sbot", r.stderr)
  end)

  it("no command is a usage error", function()
    local r = h.sbot({})
    assert.are.equal(2, r.code)
    assert.matches("missing COMMAND", r.stderr)
  end)

  it("version names sbot, Lua, libcurl and OpenSSL", function()
    local r = h.sbot({ "version" })
    assert.are.equal(0, r.code)
    assert.matches("^sbot %d+%.%d+%.%d+\nLua 5%.4%.%d+\nlibcurl %d+%.%d+%.%d+ %(OpenSSL/[%d.]+%)\nOpenSSL %d", r.stdout)
  end)

  it("help lists commands and help COMMAND describes one", function()
    local r = h.sbot({ "help" })
    assert.are.equal(0, r.code)
    for _, c in ipairs({ "run", "repl", "version", "help" }) do
      assert.matches("\n  " .. c, r.stdout, 1, true)
    end
    r = h.sbot({ "help", "run" })
    assert.are.equal(0, r.code)
    assert.matches("^usage: sbot run FILE|NAME %[ARGS%.%.%.%]", r.stdout)
    r = h.sbot({ "help", "nope" })
    assert.are.equal(2, r.code)
    assert.matches("unknown command 'nope'", r.stderr)
  end)
end)
