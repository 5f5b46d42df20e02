---@meta sbot.log
-- LuaCATS type definitions of sbot.log (engine/log.c): levelled log lines with secret
-- redaction, and the core's secret type. Reference: docs/log.md.

---@alias sbot.log.Level "debug"|"info"|"warn"|"error"|"off"

---A secret value: prints as <redacted>, registered with the redactor.
---@class sbot.secret
local Secret = {}

---The value itself, for the protocol client that must send it.
---@return string value
function Secret:reveal() end

---Where the value came from ("env X", "file /p", "vault PATH", "literal").
---@return string source
function Secret:source() end

local log = {}

---@type string "<redacted>"
log.REDACTED = "<redacted>"
---@type integer shortest value accepted as a secret (6)
log.SECRET_MIN_LENGTH = 6

---@param msg any converted with tostring
---@param fields? table<string, any> key=value pairs (JSON members with --log-json)
function log.debug(msg, fields) end
---@param msg any
---@param fields? table<string, any>
function log.info(msg, fields) end
---@param msg any
---@param fields? table<string, any>
function log.warn(msg, fields) end
---@param msg any
---@param fields? table<string, any>
function log.error(msg, fields) end

---@class sbot.log.Config
---@field level? sbot.log.Level stderr threshold
---@field json? boolean JSON lines on stderr
---@field file? string|false append JSON lines to this file (false: close it)
---@field file_level? sbot.log.Level threshold of the file sink

---@param opts sbot.log.Config
---@return true|nil ok
---@return string? err
---@return integer? errno
function log.configure(opts) end

---@return sbot.log.Level level the stderr level
function log.level() end

---@param level sbot.log.Level
---@return boolean enabled whether a line at that level goes anywhere
function log.enabled(level) end

---Register a secret (a string; a secret object is registered already).
---@param value string|sbot.secret
function log.add_secret(value) end

---@param s string
---@return string redacted every registered secret replaced by <redacted>
function log.redact(s) end

---A new secret object (values shorter than 6 bytes raise).
---@param value string|sbot.secret
---@param source? string where it came from (default "literal")
---@return sbot.secret
function log.secret(value, source) end

---@param v any
---@return boolean
function log.is_secret(v) end

return log
