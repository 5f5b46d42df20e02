---@meta sbot.keeper
-- LuaCATS type definitions of sbot.keeper (engine/keeper.c): periodic work in a helper
-- process beside a busy caller (lease renewal), and an interruptible sleep.
-- Reference: docs/keeper.md.

---@class sbot.keeper.Options
---@field module string the helper calls require(module)[fn](args, state) every interval
---@field fn string
---@field args? table plain data and secret objects, copied into the helper
---@field interval number seconds between calls (0.01 .. 86400)
---@field name? string for messages and the log (default: module)

---A running helper (a to-be-closed value: closing stops it).
---@class sbot.keeper
local Keeper = {}
---Stop the helper and wait for it.
---@return any|nil state the last state fn returned (true when none)
---@return string? err
---@return "keeper"|nil code
function Keeper:stop() end
---@return boolean alive whether the helper still runs
function Keeper:alive() end
---@return integer pid the helper's pid (0 once reaped)
function Keeper:pid() end

local keeper = {}

---@param opts sbot.keeper.Options
---@return sbot.keeper|nil keeper
---@return string? err
---@return string? code errno name
function keeper.start(opts) end

---Wait (Ctrl-C ends it early; the interpreter then raises interrupted!).
---@param seconds number 0 .. 86400
function keeper.sleep(seconds) end

return keeper
