---@meta sbot.s3xml
-- LuaCATS type definitions of sbot.s3xml (engine/s3xml.c): S3 XML answers as Lua
-- tables, on expat. Reference: docs/s3xml.md.

local s3xml = {}

---@param body string
---@param list_names? string[] names that always become arrays
---@return string|nil root the root element's name
---@return table|string value its content (or the parse error)
function s3xml.parse(body, list_names) end
---@param s string
---@return string escaped & < > " ' (and CR) escaped
function s3xml.escape(s) end

return s3xml
