--- sbot.artifact: artifacts recorded by components and stored by runs.
--
-- A component records an artifact during any phase with
--   self:artifact{key = "bios.json", content = text | file = path, type = "application/json",
--                 metadata = {...}}
-- The entry that goes into results.artifacts is {key, type, size, sha256,
-- metadata, path}: `path` is the local file (content is written to
-- <artifact_dir>/<id>/<step or component>/<key> at once, so nothing large stays in
-- memory and a fleet worker's artifacts survive the worker).
local crypto = require "sbot.crypto"
local fsio = require "sbot.fsio"
local json = require "sbot.json"

local M = {}

local function check_key(key)
  if type(key) ~= "string" or key == "" then return nil, "key must be a non-empty string" end
  if key:sub(1, 1) == "/" or not key:match("^[%w_.%-/]+$") then
    return nil, "key " .. string.format("%q", key) .. " must be relative and use only letters, digits, _ . - /"
  end
  for seg in (key .. "/"):gmatch("([^/]*)/") do
    if seg == "" or seg == "." or seg == ".." then
      return nil, "key " .. string.format("%q", key) .. " has an empty, '.' or '..' segment"
    end
  end
  -- what the store would refuse at the end of the run, refused now
  local ok, err = require("sbot.store").check_key(key)
  if not ok then return nil, (err:gsub("^store: ", "")) end
  return true
end

M.check_key = check_key

--- Record an artifact on component instance self. Raises on misuse (it is
-- called from inside a phase, where an error is a phase failure).
function M.record(self, spec)
  local ok, err = check_key(spec.key)
  if not ok then error("artifact: " .. err, 2) end
  if (spec.file == nil) == (spec.content == nil) then
    error("artifact " .. spec.key .. ": give exactly one of file = path or content = string", 2)
  end
  local entry = { key = spec.key, type = spec.type or "application/octet-stream",
    metadata = spec.metadata or {} }
  if spec.content ~= nil then
    if type(spec.content) ~= "string" then
      error("artifact " .. spec.key .. ": content must be a string, got " .. type(spec.content), 2)
    end
    local dir = self.artifact_dir
    if not dir then
      error("artifact " .. spec.key .. ": this instance has no artifact_dir "
        .. "(pass new(config, {artifact_dir = dir}) or record a file = path)", 2)
    end
    local path = table.concat({ dir, self.id, self.step or self.component, spec.key }, "/")
    local ok, merr = fsio.mkdirs(path:match("^(.*)/[^/]*$"))
    if not ok then error("artifact " .. spec.key .. ": " .. merr, 2) end
    local w, werr = fsio.write_atomic(path, spec.content)
    if not w then error("artifact " .. spec.key .. ": " .. werr, 2) end
    entry.path = path
  else
    if type(spec.file) ~= "string" then
      error("artifact " .. spec.key .. ": file must be a path, got " .. type(spec.file), 2)
    end
    entry.path = spec.file
  end
  local sum, err = crypto.sha256_file(entry.path)
  local st, serr = fsio.stat(entry.path, true)
  if not sum or not st then error("artifact " .. spec.key .. ": " .. (err or serr), 2) end
  entry.sha256, entry.size = crypto.hex(sum), st.size
  local list = self.artifacts
  for i, a in ipairs(list) do
    if a.key == entry.key then list[i] = entry; return entry end
  end
  list[#list + 1] = entry
  return entry
end

--- Store every artifact of a list of results through sbot.store.
-- opts: {run_id, run_dir, store = url or nil, store_opts = store.open's opts
-- (credentials, tls) for that URL}. With a store URL, each artifact
-- goes under <run_id>/<server>/<step>/<key>; without one, into the
-- embedded file store file://<run_dir>/artifacts as <server>/<step>/<key>
-- (<step> is the step name a workflow gave, else the component name).
-- Each entry gets `stored` = the object's URL (file://..., or s3://bucket/prefix/key:
-- never a presigned URL). Returns true, or nil and the errors.
function M.store_all(results, opts)
  local store_mod = require "sbot.store"
  local errors = {}
  local url, prefix = opts.store, opts.run_id .. "/"
  if not url then
    local dir = opts.run_dir .. "/artifacts"
    assert(fsio.mkdirs(dir))
    url, prefix = "file://" .. assert(fsio.realpath(dir)), ""
  end
  local store, err = store_mod.open(url, opts.store and opts.store_opts or nil)
  if not store then return nil, "artifact store " .. url .. ": " .. tostring(err) end
  for _, r in ipairs(results) do
    for _, a in ipairs(r.artifacts or {}) do
      local rel = table.concat({ r.id or "-", r.step or r.component or "-", a.key }, "/")
      local meta = { type = a.type }
      for k, v in pairs(a.metadata or {}) do meta[k] = tostring(v) end
      local res, perr = store:put(prefix .. rel, { file = a.path }, meta)
      if not res then
        errors[#errors + 1] = rel .. ": " .. tostring(perr)
      elseif res.sha256 ~= a.sha256 then
        errors[#errors + 1] = rel .. ": changed since it was recorded (sha256 " .. res.sha256
          .. ", recorded " .. a.sha256 .. ")"
      elseif store.kind == "s3" then
        -- where it is, not a presigned URL: that would be a bearer
        -- credential for the object written into results.json
        a.stored = store.url_base .. prefix .. rel
      else
        a.stored = store:url(prefix .. rel)
      end
    end
  end
  if #errors > 0 then return nil, table.concat(errors, "\n") end
  return true
end

return M
