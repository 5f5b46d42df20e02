---@meta sbot.crypto
-- LuaCATS type definitions of sbot.crypto (engine/crypto.c, OpenSSL 3). Digests are raw
-- bytes: crypto.hex for text. Reference: docs/crypto.md.

---An incremental hash (a to-be-closed value).
---@class sbot.crypto.hasher
local Hasher = {}
---@param data string
---@return sbot.crypto.hasher self (chainable)
function Hasher:update(data) end
---@return string digest raw bytes; the hasher is finished
function Hasher:digest() end

---Byte ranges hashed in a worker thread (a to-be-closed value).
---@class sbot.crypto.job
local Job = {}
---@return string[]|nil digests raw 32-byte SHA-256 of each range, in order
---@return string? err
---@return string? code the errno name ("ENOENT", ...; "ERANGE": the file ends before a range)
function Job:wait() end
---Cancel and join the worker (idempotent).
function Job:close() end

local crypto = {}

---@param data string
---@return string digest 32 bytes
function crypto.sha256(data) end
---@param path string
---@param offset? integer
---@param length? integer
---@return string|nil digest 32 bytes
---@return string? err
---@return string? code the errno name ("ENOENT", "EACCES", ...; "ERANGE": the file ends before the range)
function crypto.sha256_file(path, offset, length) end
---@param data string
---@return string digest 16 bytes
function crypto.md5(data) end
---@param path string
---@param offset? integer
---@param length? integer
---@return string|nil digest
---@return string? err
---@return string? code the errno name
function crypto.md5_file(path, offset, length) end
---@param key string
---@param data string
---@return string mac 32 bytes
function crypto.hmac_sha256(key, data) end
---@param key string
---@param path string
---@param offset? integer
---@param length? integer
---@return string|nil mac
---@return string? err
---@return string? code the errno name
function crypto.hmac_sha256_file(key, path, offset, length) end
---@param name "sha256"|"md5"
---@return sbot.crypto.hasher
function crypto.hasher(name) end
---@param path string
---@param ranges {[1]: integer, [2]: integer}[] {offset, length} pairs
---@param hasher? sbot.crypto.hasher also fed the whole of it, in order
---@return sbot.crypto.job
function crypto.sha256_ranges(path, ranges, hasher) end
---@param bytes string
---@return string hex lower case
function crypto.hex(bytes) end
---@param bytes string
---@return string text
function crypto.base64_encode(bytes) end
---@param text string
---@return string|nil bytes
---@return string? err
---@return "invalid"|nil code input that is not base64 (docs/errors.md)
function crypto.base64_decode(text) end
---@param n integer 0 .. 1 MiB
---@return string bytes
function crypto.random_bytes(n) end
---@return string uuid a random version-4 UUID
function crypto.uuid4() end

return crypto
