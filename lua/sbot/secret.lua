--- sbot.secret: secret objects and the resolver chain for `secret:PATH:KEY`.
--
-- A secret object is the core's secret type (engine/log.c: a userdata with
-- the metatable "sbot.secret", tested by `secret.is_secret` / sbot_is_secret
-- and nothing else): it prints and concatenates as <redacted> and encodes as
-- "<redacted>" in records; `s:reveal()` returns the value to the protocol
-- client that must send it. Every value wrapped here is also registered with
-- the log redactor, so it cannot appear in a log line either.
--
-- References are resolved by a chain of resolvers, tried in order; the first
-- that knows the secret wins. The default chain is {env, file}; a site file
-- with a `vault` section puts sbot.vault's resolver in front for that site
-- (sbot.site), and a script may insert one with `secret.add_resolver(r, 1)`.
local log = require "sbot.log"
local fsio = require "sbot.fsio"

local M = {}

--- Shortest value accepted as a secret, in bytes. A shorter one cannot be
-- redacted from logs without also hiding ordinary words, numbers and keys
-- (a one-character password would turn every "a" of every line into
-- <redacted>), and leaving it in clear is not an option: it is refused where
-- it enters (resolution, site literals, secret.new). 6 is the length of the
-- iDRAC factory default `calvin` and of s3rver's `S3RVER` key.
M.MIN_LENGTH = log.SECRET_MIN_LENGTH

--- nil when v is long enough to be a secret, else why not (no value shown).
function M.too_short(v)
  if #v >= M.MIN_LENGTH then return nil end
  return string.format("is %d byte%s long; sbot refuses secrets shorter than %d bytes, which cannot be "
    .. "redacted from logs without hiding ordinary words and numbers too: use a longer secret",
    #v, #v == 1 and "" or "s", M.MIN_LENGTH)
end

--- The one test of the secret type (a userdata with the core's metatable).
M.is_secret = log.is_secret

--- Wrap a string value; registers it with the log redactor. A secret
-- object is returned as it is.
function M.new(value, source)
  if M.is_secret(value) then return value end
  if type(value) ~= "string" then
    error("sbot.secret.new: expected a string, got " .. type(value), 2)
  end
  local short = M.too_short(value)
  if short then error("sbot.secret.new: the value (" .. (source or "literal") .. ") " .. short, 2) end
  return log.secret(value, source or "literal")
end

--- Plain value of a secret or string (nil stays nil).
function M.reveal(v)
  if M.is_secret(v) then return v:reveal() end
  return v
end

---------------------------------------------------------------------------
-- Resolvers. A resolver is {name = ..., resolve = function(path, key, ctx)}
-- returning the value (a string) when found, nil and a note naming what it
-- tried when not found, or nil, message, "error" for a hard failure.

local SEGMENT = "^[%w_.%-]+$"

local function check_segments(path, key)
  for seg in (path .. "/"):gmatch("([^/]*)/") do
    if not seg:match(SEGMENT) or seg == "." or seg == ".." then
      return nil, "bad path segment '" .. seg .. "'"
    end
  end
  if not key:match(SEGMENT) or key == "." or key == ".." then
    return nil, "bad key '" .. key .. "'"
  end
  return true
end

--- Environment variable name for PATH and KEY: upper case, / and - as _.
function M.env_name(path, key)
  return ((path .. "_" .. key):upper():gsub("[/%-%.]", "_"))
end

M.env = {
  name = "env",
  resolve = function(path, key, ctx)
    local name = M.env_name(path, key)
    local getenv = ctx and ctx.getenv or os.getenv
    local v = getenv(name)
    if v == "" then -- set but empty: a mistake (`X=$(cat missing)`), not "use the next resolver"
      return nil, "environment variable " .. name .. " is set but empty (unset it to try the next resolver)", "error"
    end
    if v ~= nil then return v, "env " .. name end
    return nil, "environment variable " .. name
  end,
}

M.file = {
  name = "file",
  resolve = function(path, key, ctx)
    local dir = ctx and ctx.secrets_dir
    if not dir then return nil, "no secrets_dir configured" end
    local file = dir .. "/" .. path .. "/" .. key
    local st, err, code = fsio.stat(file, true)
    if not st then
      if code == "ENOENT" then return nil, "file " .. file end -- ENOENT: not here
      return nil, "secret file " .. err, "error"
    end
    if st.type ~= "file" then
      return nil, "secret file " .. file .. " is not a regular file", "error"
    end
    if st.mode & 0x3f ~= 0 then -- any group/other permission bit (077)
      return nil, string.format("secret file %s has mode %04o; it must be 0600 (chmod 600 %s)",
        file, st.mode, file), "error"
    end
    local f, ferr = io.open(file, "rb")
    if not f then return nil, "secret file " .. ferr, "error" end
    local v = f:read("a")
    f:close()
    v = v:gsub("\r?\n$", "")
    if v == "" then return nil, "secret file " .. file .. " is empty", "error" end
    return v, "file " .. file
  end,
}

M.resolvers = { M.env, M.file }

--- Insert a resolver into the chain (position 1 = tried first).
function M.add_resolver(r, pos)
  if type(r) ~= "table" or type(r.name) ~= "string" or type(r.resolve) ~= "function" then
    error("sbot.secret.add_resolver: expected {name = string, resolve = function}", 2)
  end
  table.insert(M.resolvers, pos or #M.resolvers + 1, r)
end

--- Parse "secret:PATH:KEY[@VERSION]" -> path, key, version (an integer, or
-- nil); nil when s is not a reference; nil, err when it looks like one but is
-- malformed.
function M.parse_ref(s)
  if type(s) ~= "string" or s:sub(1, 7) ~= "secret:" then return nil end
  local path, key = s:match("^secret:(.+):([^:]+)$")
  if not path then
    return nil, "malformed secret reference '" .. s .. "' (expected secret:PATH:KEY)"
  end
  -- a version pin (Vault KV v2): KEY@N, N >= 1
  local k, v = key:match("^(.+)@(%d+)$")
  local version = v and math.tointeger(tonumber(v))
  if k then
    if not version or version < 1 then
      return nil, "malformed secret reference '" .. s .. "': version must be an integer >= 1"
    end
    key = k
  end
  local ok, err = check_segments(path, key)
  if not ok then return nil, "malformed secret reference '" .. s .. "': " .. err end
  return path, key, version
end

--- Resolve one reference string to a secret object.
-- ctx: {secrets_dir = dir, getenv = fn, resolvers = list}. Returns the
-- object, or nil and a message saying what was tried.
function M.resolve(ref, ctx)
  local path, key, version = M.parse_ref(ref)
  if not path then return nil, key or ("not a secret reference: " .. tostring(ref)) end
  local tried = {}
  for _, r in ipairs(ctx and ctx.resolvers or M.resolvers) do
    -- a pinned version (KEY@N) is only for resolvers that keep versions (Vault KV v2)
    if version and not r.versions then
      tried[#tried + 1] = r.name .. " (keeps no versions)"
    else
      local v, note, kind = r.resolve(path, key, ctx, version)
      if v ~= nil then
        local short = M.too_short(v)
        if short then return nil, ref .. " (" .. note .. ") " .. short end
        return M.new(v, note)
      end
      if kind == "error" then return nil, ref .. ": " .. note end
      tried[#tried + 1] = note
    end
  end
  return nil, ref .. " not found (tried " .. table.concat(tried, ", ") .. ")"
end

local function key_path(prefix, k)
  if type(k) == "number" then return prefix .. "[" .. k .. "]" end
  if prefix == "" then return tostring(k) end
  return prefix .. "." .. tostring(k)
end

--- Replace every `secret:PATH:KEY` string inside t (recursively, in place)
-- with its secret object. Returns t, or nil and "keypath: message" errors.
-- Tables nested deeper than ctx.max_depth (default 64) are an error there.
function M.resolve_tree(t, ctx, prefix)
  local errors, seen = {}, {}
  local max_depth = ctx and ctx.max_depth or 64
  local function walk(node, path, depth)
    if seen[node] then return end
    seen[node] = true
    if depth > max_depth then
      errors[#errors + 1] = path .. ": nested deeper than " .. max_depth .. " levels"
      return
    end
    for k, v in pairs(node) do
      local p = key_path(path, k)
      if type(v) == "string" and v:sub(1, 7) == "secret:" then
        local s, err = M.resolve(v, ctx)
        if s then node[k] = s else errors[#errors + 1] = p .. ": " .. err end
      elseif type(v) == "table" and getmetatable(v) == nil then
        walk(v, p, depth + 1)
      end
    end
  end
  walk(t, prefix or "", 0)
  if #errors > 0 then
    table.sort(errors)
    return nil, table.concat(errors, "\n")
  end
  return t
end

return M
