---@meta sbot.ws
-- LuaCATS type definitions of sbot.ws (engine/ws.c): the WebSocket client (TrueNAS's
-- JSON-RPC). Reference: docs/ws.md.

---@class sbot.ws.Options
---@field timeout? number seconds for the whole connect (default 30)
---@field headers? table<string, string|sbot.secret>
---@field tls? sbot.tls.Options
---@field max_message? integer bytes (default 64 MiB)

---An open connection (a to-be-closed value).
---@class sbot.ws.conn
local Conn = {}
---@param text string
---@param timeout? number seconds
---@return true|nil ok
---@return string? err
---@return string? code "timeout", "closed", "io", ...
function Conn:send(text, timeout) end
---@param timeout? number seconds
---@return string|nil text
---@return string? err
---@return string? code
function Conn:recv(timeout) end
---Close it (idempotent).
function Conn:close() end
---@return boolean open
function Conn:is_open() end

local ws = {}

---@param url string ws:// or wss://
---@param opts? sbot.ws.Options
---@return sbot.ws.conn|nil conn
---@return string? err
---@return string? code
function ws.connect(url, opts) end

return ws
