---@meta sbot.progress
-- LuaCATS type definitions of sbot.progress (engine/progress.c): long waits shown while
-- they last. Reference: docs/progress.md.

---A wait begun with progress.start (a to-be-closed value: `local w <close> = ...`).
---@class sbot.progress.wait
---@field what string the wait's name
local Wait = {}

---@param fraction? number 0..1, nil when the device gives none
---@param detail? string shown beside it (a job state, "120 of 900 MiB")
function Wait:update(fraction, detail) end

---The wait is over (twice is harmless).
function Wait:done() end

local progress = {}

---Begin the wait `what`, or update it.
---@param what string
---@param fraction? number 0..1 (nil: unknown)
---@param detail? string
function progress.update(what, fraction, detail) end

---@param what string
function progress.done(what) end

---@param what string
---@param detail? string
---@return sbot.progress.wait
function progress.start(what, detail) end

---@return "tty"|"log"|"pipe"|"off" mode where this process's waits go
function progress.mode() end

---@param opts {mode?: "auto"|"tty"|"log"|"off", log_interval?: number}
function progress.configure(opts) end

return progress
