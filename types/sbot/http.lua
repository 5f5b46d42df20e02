---@meta sbot.http
-- LuaCATS type definitions of sbot.http (engine/http.c): the HTTP(S) client on libcurl.
-- Reference: docs/http.md. Failures are `nil, message, code` with code one of
-- "resolve", "connect", "timeout", "tls", "closed", "io", "protocol", "too_large".

---@class sbot.http.Retries
---@field max? integer attempts after the first (default 3)
---@field base? number first backoff in seconds (default 0.5)
---@field cap? number longest backoff (default 30)

---@class sbot.http.Request
---@field method? string default "GET"
---@field url string http:// or https:// URL
---@field headers? table<string, string|number|sbot.secret>
---@field body? string sent from memory
---@field body_file? string a file streamed as the body
---@field body_offset? integer first byte of body_file to send
---@field body_length? integer bytes of body_file to send
---@field output_file? string a 2xx body is streamed here (atomically)
---@field timeout? number seconds for one attempt (default 60)
---@field connect_timeout? number seconds to connect (default 10)
---@field retries? sbot.http.Retries|false
---@field retry_unsafe? boolean allow retries of POST/PATCH
---@field retry_if? fun(res: sbot.http.Response|nil, err?: string, code?: string): boolean
---@field tls? sbot.tls.Options
---@field basic_auth? {user: string, password: string|sbot.secret}
---@field max_body? number largest body kept in memory (default 64 MiB)
---@field progress? string|fun(done: integer, total: integer|nil) a wait's name (docs/progress.md) or a callback
---@field connection_close? boolean a new connection, closed after the request

---@class sbot.http.Response
---@field status integer HTTP status of the final answer
---@field headers table<string, string|string[]> lower-case names; a repeated header is a list
---@field body? string the body (absent when a 2xx went to output_file)
---@field file? string output_file, when the body went there
---@field url string the effective URL (secrets redacted)
---@field attempts integer retries + 1
---@field timings {dns: number, connect: number, tls: number, ttfb: number, total: number} seconds

local http = {}

---@param req sbot.http.Request
---@return sbot.http.Response|nil res
---@return string? err
---@return string? code
function http.request(req) end

---@param url string
---@param opts? sbot.http.Request
---@return sbot.http.Response|nil res
---@return string? err
---@return string? code
function http.get(url, opts) end

---@param url string
---@param opts? sbot.http.Request
---@return sbot.http.Response|nil res
---@return string? err
---@return string? code
function http.head(url, opts) end

---@param url string
---@param opts? sbot.http.Request body, headers, ...
---@return sbot.http.Response|nil res
---@return string? err
---@return string? code
function http.post(url, opts) end

---@param url string
---@param opts? sbot.http.Request
---@return sbot.http.Response|nil res
---@return string? err
---@return string? code
function http.put(url, opts) end

---@param url string
---@param opts? sbot.http.Request
---@return sbot.http.Response|nil res
---@return string? err
---@return string? code
function http.patch(url, opts) end

---@param url string
---@param opts? sbot.http.Request
---@return sbot.http.Response|nil res
---@return string? err
---@return string? code
function http.delete(url, opts) end

---Many requests at once; each entry is a response, or for a transport failure
---`{nil, message, code, error = message, code = code}`.
---@param requests sbot.http.Request[]
---@param opts? {per_host?: integer, total?: integer}
---@return table[] results in the order of requests
function http.batch(requests, opts) end

return http
