---@meta sbot.truenas
-- LuaCATS type definitions of sbot.truenas (engine/truenas.c): the TrueNAS SCALE API
-- client, JSON-RPC over WebSocket or REST. Reference: docs/truenas.md.

---@class sbot.truenas.Options
---@field url string wss://HOST/api/current (JSON-RPC) or https://HOST/api/v2.0 (REST)
---@field api_key string|sbot.secret
---@field user? string default "root"
---@field tls? sbot.tls.Options
---@field timeout? number connect seconds (default 30)
---@field call_timeout? number one call's answer (default timeout)
---@field job_timeout? number following a job to its end (default 600)
---@field progress? fun(job: table) each followed job's core.get_jobs entry; without it a wait of sbot.progress

---A logged-in client (a to-be-closed value).
---@class sbot.truenas.client
local Client = {}
---Call a method; a job method is followed to its end.
---@param method string e.g. "pool.dataset.query"
---@param ... any its positional parameters
---@return any|nil result
---@return string? err
---@return string? errname the middleware's errname (EINVAL, ENOENT, ...) or a transport word
function Client:call(method, ...) end
---@return {calls: integer, logins: integer, reconnects: integer, resends: integer, transport: "jsonrpc"|"rest", url: string} stats
function Client:stats() end
---Close it (idempotent).
function Client:close() end

local truenas = {}

---@param opts sbot.truenas.Options
---@return sbot.truenas.client|nil client
---@return string? err
---@return string? code
function truenas.connect(opts) end

return truenas
