---@meta sbot.fleet
-- LuaCATS type definitions of sbot.fleet (engine/fleet.c): a function over many items,
-- each in a forked worker with a fresh Lua state. Reference: docs/fleet.md.

---@class sbot.fleet.Options
---@field jobs? integer workers at once, 1..256 (default 4)
---@field timeout? number seconds per item (0: none)
---@field grace? number seconds a stopped worker has before it is killed (default 20)
---@field partial? boolean on Ctrl-C return what finished (and "Ctrl-C"/"SIGTERM") instead of raising
---@field labels? string[] one per item: the progress board's line, the workers' log lines

---@class sbot.fleet.Outcome
---@field ok boolean
---@field value? any what fn returned (copied back as JSON)
---@field error? string
---@field reason? "error"|"crash"|"timeout"|"exit"|"interrupted"
---@field item integer
---@field pid? integer
---@field ms? integer

local fleet = {}

---@param items any[]
---@param fn fun(item: any, index: integer): any runs in the worker (copied with its upvalues)
---@param opts? sbot.fleet.Options
---@return sbot.fleet.Outcome[] results
---@return string? interrupted "Ctrl-C" or "SIGTERM" (opts.partial)
function fleet.map(items, fn, opts) end

return fleet
