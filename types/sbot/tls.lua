---@meta sbot.tls
-- LuaCATS type definitions of sbot.tls (engine/tls.c): the one parser of TLS options.
-- Reference: docs/tls.md. Installed as share/sbot/types (docs/types.md).

---The TLS options every client takes (`tls = {...}`).
---@class sbot.tls.Options
---@field ca_file? string PEM file of the CA(s), instead of the system store (the host name is still checked)
---@field pin_sha256? string SHA-256 of the server's public key: base64, `sha256//base64` or hex (colons allowed)
---@field insecure? boolean no verification at all (never with ca_file or a pin); logged at warn level
---@field server_name? string name sent as SNI and checked against the certificate instead of the URL's host

local tls = {}

---Check a TLS table with the rules of docs/tls.md; the canonical table (the pin as base64).
---@param t sbot.tls.Options|nil the table (nil: every default)
---@param where? string names the table in messages (default "tls")
---@param url? string the URL the settings are for (refused for http:// and ws://)
---@return sbot.tls.Options|nil canonical
---@return string? err
function tls.check(t, where, url) end

---The base64 pin of the first certificate (or public key) in PEM text.
---@param pem string
---@return string|nil pin
---@return string? err
function tls.pin_sha256(pem) end

return tls
