-- Fleet workers that record their pid and hang, for the Ctrl-C test.
-- usage: sbot run fleet_hang.lua DIR
local fleet = require "sbot.fleet"
local sys = require "sbot.sys"
local dir = assert(arg[1], "usage: fleet_hang.lua DIR")
fleet.map({ 1, 2, 3 }, function(i)
  local f = assert(io.open(dir .. "/worker." .. i, "w"))
  f:write(sys.getpid())
  f:close()
  os.execute("sleep 300 &") -- a grandchild in the worker's process group
  while true do end
end, { jobs = 3 })
