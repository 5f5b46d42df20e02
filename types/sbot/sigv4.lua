---@meta sbot.sigv4
-- LuaCATS type definitions of sbot.sigv4 (engine/sigv4.c): AWS Signature Version 4.
-- Reference: docs/sigv4.md.

---@class sbot.sigv4.Request
---@field method string
---@field url? string "/path?query" or "http(s)://host[:port]/path?query"
---@field path? string the raw path (overrides url's)
---@field query? string|table<string, string|true>
---@field host? string
---@field headers? table<string, string|string[]>|{[1]: string, [2]: string}[]
---@field body? string
---@field payload_hash? string hex SHA-256, or "UNSIGNED-PAYLOAD"
---@field access_key string|sbot.secret
---@field secret_key string|sbot.secret
---@field session_token? string|sbot.secret
---@field region string
---@field service string
---@field time? string|integer "20150830T123600Z" or epoch seconds
---@field normalize_path? boolean
---@field expires? integer presign: seconds (1..604800, default 3600)

---@class sbot.sigv4.Result
---@field authorization string the Authorization header
---@field uri string the request target to send
---@field headers table<string, string> headers to add
---@field canonical_request string
---@field string_to_sign string
---@field signature string
---@field signed_headers string
---@field scope string
---@field amz_date string
---@field payload_hash string

local sigv4 = {}

---@param req sbot.sigv4.Request
---@return sbot.sigv4.Result
function sigv4.sign(req) end
---Query-string authentication: result.uri ends in &X-Amz-Signature=...
---@param req sbot.sigv4.Request
---@return sbot.sigv4.Result
function sigv4.presign(req) end
---@param s string
---@param keep_slash? boolean
---@return string encoded
function sigv4.uri_encode(s, keep_slash) end

return sigv4
