--- sbot.json: JSON for sbot. The codec is C (engine/jsonc.c, sbot.jsonc),
-- shared with sbot.redfish; this module is its face, with the array helpers.
--
-- Encoding gives what an operator wants to diff and a server expects:
--   * object keys are sorted, so the same table always gives the same text;
--   * `json.null` encodes as null (and is what null decodes to);
--   * an empty table encodes as {} unless marked as an array: `json.array{}`
--     or `json.empty_array` encode as [];
--   * a decoded JSON array is marked with the array metatable, so [] decodes
--     to an empty table that encodes back as [];
--   * a secret object is encoded only as the caller says: `secrets =
--     "redact"` writes "<redacted>" (records, logs, display), `secrets =
--     "reveal"` writes its value (only a protocol client building a request
--     body asks for that); without either (`secrets = "error"`, the default)
--     it is refused, so no JSON carries a secret, redacted or not, by accident;
--   * NaN and infinities are errors (they are not JSON).
-- `json.encode(v, {indent = true})` pretty-prints with two-space indentation.
-- Decoding returns what lua-cjson 2.1.0 returned (every number a float), with
-- arrays marked and null as json.null. See docs/json.md.
local core = require "sbot.jsonc"

local M = {}

M.null = core.null

-- the registry's "sbot.json.array" metatable: the one the decoder (and
-- sbot.redfish's) gives arrays
local array_mt = core.array_mt
M.array_mt = array_mt

--- Mark t (or a new table) as a JSON array; returns it.
function M.array(t)
  return setmetatable(t or {}, array_mt)
end

M.empty_array = setmetatable({}, {
  __name = "sbot.json.array",
  __newindex = function() error("json.empty_array is read-only", 2) end,
})

function M.is_array(t)
  local mt = getmetatable(t)
  return mt == array_mt or (mt and mt.__name == "sbot.json.array") or false
end

--- Encode v as JSON text. opts.indent = true pretty-prints; opts.secrets is
-- "error" (default), "redact" or "reveal" (see the header).
-- Raises on values JSON cannot represent (misuse), naming their path.
M.encode = core.encode

--- Decode JSON text. Returns the value, or nil and "invalid JSON: ..." for bad input.
-- null becomes json.null; arrays (empty ones too) are marked as arrays, so a
-- decoded document encodes back to the same structure.
M.decode = core.decode

return M
