---@meta sbot.jsonc
-- LuaCATS type definitions of sbot.jsonc (engine/jsonc.c): the JSON codec behind
-- sbot.json (use sbot.json; it re-exports these). Reference: docs/json.md.

local jsonc = {}

---@param value any
---@param opts? {indent?: boolean, secrets?: "error"|"redact"|"reveal"}
---@return string text
function jsonc.encode(value, opts) end
---@param text string
---@return any|nil value
---@return string? err "invalid JSON: ... at character N"
function jsonc.decode(text) end

---The metatable that marks arrays (registry "sbot.json.array").
jsonc.array_mt = {}
---cjson's null (a NULL light userdata).
---@type lightuserdata
jsonc.null = nil

return jsonc
