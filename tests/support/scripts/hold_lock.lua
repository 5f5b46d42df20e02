-- Holds a lock file until killed, for the lock contention test.
-- usage: sbot run hold_lock.lua LOCKFILE READYFILE
local lock = require "sbot.lock"
local l = assert(lock.acquire(arg[1], { name = "holder" }))
local f = assert(io.open(arg[2], "w"))
f:write("held")
f:close()
os.execute("sleep 120")
l:release()
