-- The command line is described once (lua/sbot/cli.lua): `sbot help`, the
-- man page and the completion are rendered from it, and docs/cli.md must
-- agree with it (every command, every exit status, every variable).
local helpers = require "helpers"
local cli = require "sbot.cli"

local doc = helpers.read_file(helpers.source_dir .. "/docs/cli.md")

describe("sbot's command line, described once", function()
  it("docs/cli.md has a row for every command", function()
    local missing = {}
    for _, c in ipairs(cli.commands) do
      if not doc:find("\n| `" .. c.name, 1, true) then missing[#missing + 1] = c.name end
    end
    assert.are.same({}, missing)
  end)

  it("docs/cli.md's exit status table is cli.exit_status", function()
    local section = assert(doc:match("\n## Exit status\n(.-)\n## "), "no '## Exit status' section")
    local codes = {}
    for code in section:gmatch("\n| (%w+) |") do
      if code ~= "status" then codes[#codes + 1] = code end -- the header row
    end
    local want = {}
    for _, e in ipairs(cli.exit_status) do want[#want + 1] = e[1] end
    assert.are.same(want, codes)
  end)

  it("docs/cli.md names every environment variable", function()
    for _, e in ipairs(cli.environment) do
      for var in e[1]:gmatch("[%u_]+") do
        assert.is_truthy(doc:find("`" .. var .. "`", 1, true), var .. " is not in docs/cli.md")
      end
    end
  end)

  it("sbot knows every command it describes, and help prints the description", function()
    for _, c in ipairs(cli.commands) do
      local r = helpers.sbot { "help", c.name }
      assert.are.equal(0, r.code, c.name .. ": " .. r.stderr)
      assert.are.equal("usage: sbot " .. c.synopsis .. "\n\n" .. c.help, r.stdout)
    end
    local r = helpers.sbot { "help" }
    assert.are.equal(cli.usage() .. "\nRun 'sbot help COMMAND' for more about one command; 'man sbot' for everything.\n",
      r.stdout)
  end)

  it("the built man page is what sbot help --man renders now (not a stale copy)", function()
    local built = helpers.read_file((os.getenv("SBOT_BUILD_DIR") or "build") .. "/sbot.1")
    local r = helpers.sbot { "help", "--man" }
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(r.stdout, built)
    for _, c in ipairs(cli.commands) do assert.matches("\n%.B sbot " .. c.name, built) end
    for _, e in ipairs(cli.exit_status) do assert.is_truthy(built:find("\n.B " .. e[1] .. "\n", 1, true), e[1]) end
  end)

  it("sbot complete: commands, servers of a site file (no secrets resolved), an unknown kind", function()
    local dir = helpers.tmpdir("complete")
    helpers.write_file(dir .. "/site.lua", 'return { servers = { { id = "a1", idrac = { password = "secret:x:y" } }, '
      .. '{ id = "b2" } } }')
    assert.are.equal("a1\nb2\n", helpers.sbot({ "complete", "servers", dir .. "/site.lua" }).stdout)
    local r = helpers.sbot { "complete", "commands" }
    assert.matches("^run\nrepl\nlab\nruns\nversion\nhelp\ncomplete\n$", r.stdout)
    r = helpers.sbot { "complete", "planets" }
    assert.are.equal(2, r.code)
    assert.matches("complete: unknown kind 'planets'", r.stderr)
  end)
end)
