---@meta sbot.jsonscan
-- LuaCATS type definitions of sbot.jsonscan (engine/jsonscan.c): what json.decode uses
-- to keep [] and {} apart. Reference: docs/json.md.

local jsonscan = {}

---@param text string JSON
---@return integer arrays empty arrays outside strings
---@return integer objects empty objects outside strings
function jsonscan.count(text) end
---@param text string
---@param kind "["|"{"
---@param sentinel string
---@return string text with every empty container of that kind replaced
---@return integer count
function jsonscan.rewrite(text, kind, sentinel) end

return jsonscan
