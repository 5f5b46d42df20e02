--- test_wait: a test component whose discover is a long wait reported
-- through sbot.progress (tests/repl/test_progress.sh, progress_spec.lua).
-- steps > 0: `steps` updates with a known fraction, `step_s` seconds apart
-- (each pause is a `sleep` child, so the machine is not kept busy); then,
-- with spawn_s, a child that runs that long reported as a wait of its own
-- (sys.spawn's progress option: no fraction).
local component = require "sbot.component"
local progress = require "sbot.progress"
local sys = require "sbot.sys"
local log = require "sbot.log"

local function pause(s)
  assert(sys.spawn { argv = { "sleep", string.format("%.3f", s) }, timeout = s + 10 })
end

return component.define {
  name = "test_wait",
  description = "Test component: discover waits, reporting its progress.",
  schema = {
    what = { type = "string", default = "test job", description = "the wait's name" },
    steps = { type = "integer", default = 10, min = 0 },
    step_s = { type = "number", default = 0.1, min = 0 },
    spawn_s = { type = "number", default = 0, min = 0, description = "then a child this long" },
    log_at = { type = "integer", description = "log a line at this step" },
  },
  discover = function(self)
    local what = self.config.what .. " " .. self.id
    if self.config.steps > 0 then
      local w <close> = progress.start(what)
      for i = 1, self.config.steps do
        pause(self.config.step_s)
        w:update(i / self.config.steps, i < self.config.steps / 2 and "Scheduled" or "Running")
        if i == self.config.log_at then log.info("halfway through " .. what, { server = self.id }) end
      end
    end
    if self.config.spawn_s > 0 then
      assert(sys.spawn { argv = { "sleep", tostring(self.config.spawn_s) }, timeout = self.config.spawn_s + 10,
        progress = "reboot " .. self.id })
    end
    return { waited = true }
  end,
}
