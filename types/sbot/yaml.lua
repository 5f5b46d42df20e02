---@meta sbot.yaml
-- LuaCATS type definitions of sbot.yaml (engine/yaml.c, libyaml). Reference: docs/yaml.md.

local yaml = {}

---@type lightuserdata json.null
yaml.null = nil

---One document.
---@param text string
---@param opts? {source?: string} names the text in messages
---@return any|nil value
---@return string? err with line and column
function yaml.decode(text, opts) end
---Every document of the stream.
---@param text string
---@param opts? {source?: string}
---@return any[]|nil list
---@return string? err
function yaml.decode_all(text, opts) end
---Block style; decodes back to the same value.
---@param value any
---@param opts? {secrets?: "error"|"reveal"|"redact"}
---@return string text
function yaml.encode(value, opts) end
---@param list any[]
---@param opts? {secrets?: "error"|"reveal"|"redact"}
---@return string text each element a document
function yaml.encode_all(list, opts) end

return yaml
