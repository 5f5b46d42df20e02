-- sbot.sys: process primitives.
local sys = require "sbot.sys"

describe("sbot.sys", function()
  it("answers for real pids", function()
    assert.is_true(sys.pid_alive(sys.getpid()))
    assert.is_string(sys.hostname())
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", sys.utc_iso())
  end)

  it("refuses pids that do not fit a pid_t instead of signalling every process", function()
    -- 2^32 - 1 used to become kill(-1, ...): "alive" for pid_alive, and
    -- every process of the user for kill. (kill is only tried with a pid
    -- whose truncation is a harmless, unused one.)
    assert.has_error(function() sys.pid_alive(4294967295) end)
    assert.has_error(function() sys.pid_alive(0) end)
    local ok, err = pcall(sys.kill, 4294967296 + 4194305, "CONT")
    assert.is_false(ok)
    assert.matches("pid must be a positive process id", err)
    local r, kerr = sys.kill(4194305, "CONT") -- above the kernel's PID_MAX_LIMIT: never a process
    assert.is_nil(r)
    assert.matches("^kill 4194305: ", kerr)
  end)
end)
