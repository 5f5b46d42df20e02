---@meta sbot.httpd
-- LuaCATS type definitions of sbot.httpd (engine/httpd.c): a small HTTP/1.1 server with
-- Lua handlers (what `sbot lab` runs on). Reference: docs/httpd.md.

---@class sbot.httpd.Request
---@field method string as sent
---@field path string percent-decoded, without the query
---@field raw_query string as sent ("" when absent)
---@field query table<string, string> decoded arguments
---@field headers table<string, string> lower-case names; repeats joined with ", "
---@field body string "" when absent
---@field remote string "127.0.0.1:53422"
---@field tls boolean

---@class sbot.httpd.Options
---@field host? string address to bind (default "127.0.0.1")
---@field port? integer 0: a free one
---@field handler fun(req: sbot.httpd.Request): integer, table?, string?, {delay?: number}? returns status, headers, body [, options]
---@field websocket? fun(ws: sbot.httpd.websocket, req: sbot.httpd.Request)
---@field tls? {cert: string, key: string} PEM text
---@field max_body? integer bytes (default 16 MiB)
---@field timeout? number idle seconds (default 60)

---A listening server (a to-be-closed value).
---@class sbot.httpd.server
local Server = {}
---@return integer port
function Server:port() end
---@return string url "http://127.0.0.1:PORT" or "https://..."
function Server:url() end
---One round of the event loop for this server.
---@param timeout? number seconds to wait for activity (default 0)
---@return true
function Server:step(timeout) end
---Stop listening, close every connection (twice is safe).
function Server:close() end

---A WebSocket connection handed to the websocket function.
---@class sbot.httpd.websocket
---@field request sbot.httpd.Request the upgrade request
---@field on_message? fun(ws: sbot.httpd.websocket, text: string)
---@field on_close? fun(ws: sbot.httpd.websocket)
local Ws = {}
---@param text string
---@param kind? "text"|"binary"
---@return true|nil ok
---@return string? err
---@return string? code "closed"
function Ws:send(text, kind) end
---The next message (yields the websocket function's coroutine until one arrives).
---@return string|nil text
---@return string? err
function Ws:recv() end
---@param code? integer default 1000
---@param reason? string
function Ws:close(code, reason) end
---@return boolean open
function Ws:is_open() end

local httpd = {}

---@param options sbot.httpd.Options
---@return sbot.httpd.server|nil server
---@return string? err
---@return string? code the errno name ("EADDRINUSE", "EADDRNOTAVAIL", "EACCES", ...) or "tls"
function httpd.listen(options) end
---One round over servers.
---@param servers sbot.httpd.server|sbot.httpd.server[]
---@param timeout? number
---@return true
function httpd.poll(servers, timeout) end
---Poll until opts.until() is true or every server is closed.
---@param servers sbot.httpd.server|sbot.httpd.server[]
---@param opts? {until?: fun(): boolean, tick?: number}
function httpd.run(servers, opts) end
---A self-signed P-256 certificate.
---@param options? {cn?: string, dns?: string[], ips?: string[], days?: integer}
---@return {cert: string, key: string, pin_sha256: string}
function httpd.selfsigned(options) end
---@return number seconds of a monotonic clock
function httpd.now() end
---A handler's answer that accepts a WebSocket upgrade: `return httpd.upgrade(fn)`.
---@param fn fun(ws: sbot.httpd.websocket, req: sbot.httpd.Request)
---@return any marker what the handler returns
function httpd.upgrade(fn) end
---A handler's answer that closes the connection without a response (fault injection).
---@return any marker what the handler returns
function httpd.reset() end

return httpd
