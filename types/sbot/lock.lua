---@meta sbot.lock
-- LuaCATS type definitions of sbot.lock (engine/lock.c): per-server lock files held
-- by an flock for the holder's lifetime. Reference: docs/fleet.md (sbot.lock).

---A held lock (a to-be-closed value).
---@class sbot.lock
local Lock = {}
---Release it (unlink the file, drop the flock); twice is fine.
function Lock:release() end
---@return boolean held whether this object still holds the lock
function Lock:held() end
---@return string path the lock file
function Lock:path() end
---Let go of the flock but leave the file (it then says its holder is gone).
function Lock:detach() end

local lock = {}

---Take the lock at path; never waits.
---@param path string
---@param opts? {name?: string} what it locks, for messages
---@return sbot.lock|nil lock
---@return string? err
---@return string? code "locked" (another process holds it), or the errno name of a failed call
function lock.acquire(path, opts) end
---@param path string
---@return {pid: integer, host: string, since: string}|nil owner
function lock.owner(path) end
---Whether a live process holds the file's flock now, without taking it over.
---@param path string
---@return {held: boolean, pid?: integer, host?: string, since?: string}|nil probe
---@return string? err
---@return string? code
function lock.probe(path) end

return lock
