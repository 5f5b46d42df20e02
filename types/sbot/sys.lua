---@meta sbot.sys
-- LuaCATS type definitions of sbot.sys (engine/sys.c): processes and the host.
-- Reference: docs/sys.md.

---@class sbot.sys.SpawnOptions
---@field argv string[] the program (looked up in PATH without a "/") and its arguments
---@field cwd? string
---@field env? table<string, string|number|sbot.secret> the whole environment
---@field stdin? string|sbot.secret
---@field timeout? number seconds (default 60; math.huge: none)
---@field output_limit? integer bytes kept of stdout and of stderr (default 16 MiB)
---@field progress? string the run is a wait of sbot.progress by this name

---@class sbot.sys.SpawnResult
---@field status? integer exit status
---@field signal? string the signal that ended it ("TERM", "KILL", ...)
---@field stdout string
---@field stderr string
---@field timed_out? true
---@field truncated? true

local sys = {}

---@param opts sbot.sys.SpawnOptions
---@return sbot.sys.SpawnResult|nil result
---@return string? err
---@return string? code errno name
function sys.spawn(opts) end
---@return integer pid
function sys.getpid() end
---@return string name
function sys.hostname() end
---@param pid integer
---@return boolean alive
function sys.pid_alive(pid) end
---@param pid integer
---@param sig "TERM"|"KILL"|"INT"|"HUP"|"SEGV"|"ABRT"|"USR1"|"USR2"|"STOP"|"CONT"
---@return true|nil ok
---@return string? err
---@return string? code
function sys.kill(pid, sig) end
---@return number seconds of a monotonic clock
function sys.monotime() end
---@return string time "2026-11-26T12:03:00.123Z"
function sys.utc_iso() end

---Whether s is name-or-ip[:port] (IPv6 in brackets): the grammar of iscsi.probe's portal and redfish.connect's host.
---@param s string
---@param port_required? boolean
---@return true|nil ok
---@return string? err "'<s>' <what is wrong>"
---@return "invalid"|nil code
function sys.check_hostport(s, port_required) end

return sys
