--- sbot.store: the artifact store, one API over two backends.
--
--   local store = require "sbot.store"
--   local st = assert(store.open("file:///var/lib/sbot/artifacts"))
--   local st = assert(store.open("s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1",
--                                {access_key = ..., secret_key = ...}))
--   st:put(key, "content" | {file = path [, progress = "upload x"]}, {meta = "data"}) -> {key, size, sha256, etag}
--   st:get(key [, dest])   -> content, info   |  info (dest = path or {file = path})
--   st:head(key)           -> {key, size, sha256, etag, metadata, last_modified}
--   st:list(prefix)        -> {{key, size, last_modified}, ...} sorted by key
--   st:url(key [, opts])   -> file:// URL, or a presigned https/http GET URL for S3
--   st:delete(key)         -> true (deleting a missing key is not an error)
--
-- With an s3:// store the store also keeps run records and locks across
-- machines: store.keep_run(run, record) puts results.json and log.jsonl next
-- to the run's artifacts and adds the run to the store's index
-- (metadata/index.json, updated with conditional writes), and
-- store.lock(url, opts, name, o) takes a per-server lease (sbot.lease).
--
-- Expected failures return nil, message, code (code "NotFound" for a missing
-- key, "BadKey" for a key that is not allowed, "Checksum" when stored bytes do
-- not match their recorded SHA-256). Misuse (wrong argument types) raises.
local fsio = require "sbot.fsio"
local crypto = require "sbot.crypto"
local json = require "sbot.json"

local M = {}

M.INDEX_KEY = "metadata/index.json"
M.INDEX_FORMAT = "sbot-index/1"
M.LOCK_PREFIX = ".sbot/locks/"

local META_SUFFIX = ".sbot-meta.json"
local TMP_PATTERN = "%.tmp%-%x%x%x%x%x%x%x%x%x%x%x%x$"

--- Check a store key: relative, "/"-separated, no empty, "." or ".."
-- segment, no NUL, not a reserved name. Returns true or nil, message.
local function check_key(key)
  if type(key) ~= "string" then
    error("store: key must be a string, got " .. type(key), 3)
  end
  if key == "" then return nil, "store: empty key" end
  if #key > 1024 then return nil, "store: key longer than 1024 bytes" end
  if key:find("\0", 1, true) then return nil, "store: key contains a NUL byte" end
  if key:sub(1, 1) == "/" then return nil, "store: key '" .. key .. "' must not start with '/'" end
  for seg in (key .. "/"):gmatch("([^/]*)/") do
    if seg == "" then return nil, "store: key '" .. key .. "' has an empty path segment" end
    if seg == "." or seg == ".." then
      return nil, "store: key '" .. key .. "' has a '" .. seg .. "' segment (keys cannot leave the store)"
    end
  end
  if key:sub(-#META_SUFFIX) == META_SUFFIX or key:find(TMP_PATTERN) then
    return nil, "store: key '" .. key .. "' uses a name reserved for the store's own files"
  end
  return true
end
M.check_key = check_key

local function check_metadata(metadata)
  if metadata == nil then return {} end
  if type(metadata) ~= "table" then error("store: metadata must be a table of strings", 3) end
  local out = {}
  for k, v in pairs(metadata) do
    if type(k) ~= "string" or not k:match("^[%w%-_]+$") then
      error("store: metadata name " .. tostring(k) .. " must be letters, digits, '-' or '_'", 3)
    end
    if type(v) ~= "string" and type(v) ~= "number" then
      error("store: metadata '" .. k .. "' must be a string", 3)
    end
    out[k:lower()] = tostring(v)
  end
  return out
end

local function check_source(source)
  if type(source) == "string" then return end
  if type(source) == "table" and type(source.file) == "string" then
    if source.progress ~= nil and type(source.progress) ~= "string" then
      error("store: source.progress must be a string (the wait's name, docs/progress.md)", 3)
    end
    return
  end
  error("store: source must be a string of content or {file = path [, progress = what]}", 3)
end

local function dest_path(dest)
  if dest == nil then return nil end
  if type(dest) == "string" then return dest end
  if type(dest) == "table" and type(dest.file) == "string" then return dest.file end
  error("store: dest must be a path or {file = path}", 3)
end

local function url_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(q)
  local out = {}
  for part in (q or ""):gmatch("[^&]+") do
    local k, v = part:match("^([^=]*)=?(.*)$")
    out[url_decode(k)] = url_decode(v)
  end
  return out
end

-- ---------------------------------------------------------------------------
-- file:// backend
-- ---------------------------------------------------------------------------

local File = {}
File.__index = File
File.__name = "sbot.store.file"

function File:_path(key) return self.root .. "/" .. key end

function File:_where(key) return "file://" .. self.root .. "/" .. key end

local function parent_of(path) return path:match("^(.*)/[^/]*$") end

function File:put(key, source, metadata)
  local ok, err = check_key(key)
  if not ok then return nil, err, "BadKey" end
  check_source(source)
  local meta = check_metadata(metadata)
  local path = self:_path(key)
  local dir = parent_of(path)
  local made, merr = fsio.mkdirs(dir)
  if not made then return nil, "store put " .. self:_where(key) .. ": " .. merr, "IO" end
  local st = fsio.stat(path)
  if st and st.type ~= "file" then
    return nil, "store put " .. self:_where(key) .. ": a " .. st.type .. " is in the way", "BadKey"
  end
  local wait <close> = type(source) == "table" and source.progress
    and require("sbot.progress").start(source.progress) or nil
  local r, werr, code
  local src = type(source) == "table" and fsio.stat(source.file, true)
  if src and st and src.dev == st.dev and src.ino == st.ino then
    -- the file is the object already (a run's artifact written in place):
    -- nothing to copy; what it holds is what the metadata records
    local sum, serr, scode = crypto.sha256_file(path)
    if not sum then return nil, "store put " .. self:_where(key) .. ": " .. serr, scode end
    r = { size = src.size, sha256 = crypto.hex(sum) }
  else
    r, werr, code = fsio.write_atomic(path, type(source) == "table" and { file = source.file } or source)
    if not r then return nil, "store put " .. self:_where(key) .. ": " .. werr, code end
  end
  local info = { key = key, size = r.size, sha256 = r.sha256, etag = r.sha256,
                 metadata = meta, last_modified = os.time() }
  local mr, mwerr, mcode = fsio.write_atomic(path .. META_SUFFIX, json.encode(info, { secrets = "redact" }))
  if not mr then
    fsio.remove(path) -- no object without its metadata (head and get would refuse it anyway)
    return nil, "store put " .. self:_where(key) .. " (metadata): " .. mwerr, mcode
  end
  return { key = key, size = r.size, sha256 = r.sha256, etag = r.sha256 }
end

function File:head(key)
  local ok, err = check_key(key)
  if not ok then return nil, err, "BadKey" end
  local path = self:_path(key)
  local st = fsio.stat(path)
  if not st or st.type ~= "file" then
    return nil, "store: no object " .. self:_where(key), "NotFound"
  end
  local f = io.open(path .. META_SUFFIX, "rb")
  if not f then
    return nil, "store: object " .. self:_where(key) .. " has no metadata file (not written by the store)", "NotFound"
  end
  local text = f:read("a")
  f:close()
  local info, jerr = json.decode(text)
  if type(info) ~= "table" then
    return nil, "store: metadata of " .. self:_where(key) .. " is not valid JSON: " .. tostring(jerr), "Corrupt"
  end
  if info.size ~= st.size then
    return nil, string.format("store: %s is %d bytes but its metadata says %s (interrupted write?)",
      self:_where(key), st.size, tostring(info.size)), "Checksum"
  end
  return { key = key, size = info.size, sha256 = info.sha256, etag = info.etag or info.sha256,
           metadata = info.metadata or {}, last_modified = info.last_modified or st.mtime }
end

function File:get(key, dest)
  local info, err, code = self:head(key)
  if not info then return nil, err, code end
  local path = self:_path(key)
  local out = dest_path(dest)
  if out then
    local r, werr, wcode = fsio.write_atomic(out, { file = path })
    if not r then return nil, "store get " .. self:_where(key) .. ": " .. werr, wcode end
    if r.sha256 ~= info.sha256 then
      fsio.remove(out)
      return nil, "store get " .. self:_where(key) .. ": SHA-256 " .. r.sha256 ..
        " does not match the recorded " .. tostring(info.sha256), "Checksum"
    end
    info.file = out
    return info
  end
  local f, ferr = io.open(path, "rb")
  if not f then return nil, "store get " .. self:_where(key) .. ": " .. ferr, "IO" end
  local data = f:read("a")
  f:close()
  if crypto.hex(crypto.sha256(data)) ~= info.sha256 then
    return nil, "store get " .. self:_where(key) .. ": content does not match its recorded SHA-256", "Checksum"
  end
  return data, info
end

function File:list(prefix)
  prefix = prefix or ""
  if type(prefix) ~= "string" then error("store: prefix must be a string", 2) end
  local out = {}
  local function walk(dir, rel)
    local entries = fsio.list(dir)
    if not entries then return end
    for _, e in ipairs(entries) do
      local key = rel == "" and e.name or (rel .. "/" .. e.name)
      if e.type == "directory" then
        -- descend only where the prefix can still match
        local k = key .. "/"
        if k:sub(1, #prefix) == prefix or prefix:sub(1, #k) == k then
          walk(dir .. "/" .. e.name, key)
        end
      elseif e.type == "file" and key:sub(-#META_SUFFIX) ~= META_SUFFIX
        and not key:find(TMP_PATTERN) and key:sub(1, #prefix) == prefix then
        local st = fsio.stat(dir .. "/" .. e.name)
        out[#out + 1] = { key = key, size = st and st.size, last_modified = st and st.mtime }
      end
    end
  end
  walk(self.root, "")
  table.sort(out, function(a, b) return a.key < b.key end)
  return out
end

function File:url(key)
  local ok, err = check_key(key)
  if not ok then return nil, err, "BadKey" end
  local enc = key:gsub("[^%w%-%._~/]", function(c) return string.format("%%%02X", c:byte()) end)
  return "file://" .. self.root .. "/" .. enc
end

function File:delete(key)
  local ok, err = check_key(key)
  if not ok then return nil, err, "BadKey" end
  local path = self:_path(key)
  local st = fsio.stat(path)
  if st and st.type ~= "file" then
    return nil, "store delete " .. self:_where(key) .. ": not an object (a " .. st.type .. ")", "BadKey"
  end
  if st then
    local rok, rerr, rcode = fsio.remove(path)
    if not rok then return nil, "store delete " .. self:_where(key) .. ": " .. rerr, rcode end
  end
  fsio.remove(path .. META_SUFFIX)
  -- prune now-empty parent directories, never the root
  local dir = parent_of(path)
  while dir and #dir > #self.root do
    local entries = fsio.list(dir)
    if not entries or #entries > 0 then break end
    fsio.remove(dir)
    dir = parent_of(dir)
  end
  return true
end

local function open_file(url)
  local path = url:match("^file://(.*)$")
  path = url_decode((path or ""):gsub("%?.*$", ""))
  if path == "" or path:sub(1, 1) ~= "/" then
    return nil, "store: '" .. url .. "' must be file:///absolute/path", "BadURL"
  end
  path = path:gsub("/+$", "")
  if path == "" then path = "/" end
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then return nil, "store: '" .. url .. "' must not contain '..'", "BadURL" end
  end
  local ok, err = fsio.mkdirs(path)
  if not ok then return nil, "store: cannot create root of " .. url .. ": " .. err, "IO" end
  return setmetatable({ root = path, url_base = "file://" .. path, kind = "file" }, File)
end

-- ---------------------------------------------------------------------------
-- s3:// backend (over sbot.s3)
-- ---------------------------------------------------------------------------

local S3 = {}
S3.__index = S3
S3.__name = "sbot.store.s3"

function S3:_key(key) return self.prefix .. key end

function S3:_where(key) return "s3://" .. self.bucket .. "/" .. self.prefix .. key end

function S3:put(key, source, metadata)
  local ok, err = check_key(key)
  if not ok then return nil, err, "BadKey" end
  check_source(source)
  local meta = check_metadata(metadata)
  local r, perr, code = self.client:put_object{ bucket = self.bucket, key = self:_key(key),
    body = type(source) == "string" and source or nil,
    file = type(source) == "table" and source.file or nil,
    progress = type(source) == "table" and source.progress or nil,
    metadata = meta, sha256_metadata = true }
  if not r then return nil, "store put " .. self:_where(key) .. ": " .. perr, code end
  return { key = key, size = r.size, sha256 = r.sha256, etag = r.etag }
end

local function s3_info(key, h)
  local meta = {}
  for k, v in pairs(h.metadata or {}) do meta[k] = v end
  local sha = meta["sbot-sha256"]
  meta["sbot-sha256"] = nil
  return { key = key, size = h.size, sha256 = sha, etag = h.etag, metadata = meta,
           last_modified = h.last_modified, content_type = h.content_type }
end

function S3:head(key)
  local ok, err = check_key(key)
  if not ok then return nil, err, "BadKey" end
  local h, herr, code = self.client:head_object{ bucket = self.bucket, key = self:_key(key) }
  if not h then
    if code == "NoSuchKey" or code == "NotFound" then
      return nil, "store: no object " .. self:_where(key), "NotFound"
    end
    return nil, herr, code
  end
  return s3_info(key, h)
end

function S3:get(key, dest)
  local ok, err = check_key(key)
  if not ok then return nil, err, "BadKey" end
  local out = dest_path(dest)
  local r, gerr, code = self.client:get_object{ bucket = self.bucket, key = self:_key(key),
    file = out, verify_sha256 = true }
  if not r then
    if code == "NoSuchKey" then return nil, "store: no object " .. self:_where(key), "NotFound" end
    return nil, gerr, code
  end
  local info = s3_info(key, r)
  if out then
    info.file = out
    return info
  end
  return r.body, info
end

function S3:list(prefix)
  prefix = prefix or ""
  if type(prefix) ~= "string" then error("store: prefix must be a string", 2) end
  local out = {}
  for obj, err in self.client:list_objects{ bucket = self.bucket, prefix = self.prefix .. prefix } do
    if not obj then return nil, err end
    out[#out + 1] = { key = obj.key:sub(#self.prefix + 1), size = obj.size,
                      last_modified = obj.last_modified, etag = obj.etag }
  end
  table.sort(out, function(a, b) return a.key < b.key end)
  return out
end

function S3:url(key, opts)
  local ok, err = check_key(key)
  if not ok then return nil, err, "BadKey" end
  return self.client:presign{ bucket = self.bucket, key = self:_key(key), method = "GET",
                              expires = opts and opts.expires or 3600 }
end

function S3:delete(key)
  local ok, err = check_key(key)
  if not ok then return nil, err, "BadKey" end
  local r, derr, code = self.client:delete_object{ bucket = self.bucket, key = self:_key(key) }
  if not r then return nil, derr, code end
  return true
end

--- The store's index (`<prefix>metadata/index.json`): read-modify-write with
-- conditional writes (sbot.s3 update_json). update(doc) gets the normalised
-- document {format, objects = {}, runs = {}} and returns it changed, or nil.
function S3:update_index(update)
  return self.client:update_json { bucket = self.bucket, key = self.prefix .. M.INDEX_KEY,
    update = function(doc)
      return update(M.normalise_index(doc))
    end }
end

--- The index document as read (or nil) -> one with every part present.
function M.normalise_index(doc)
  doc = type(doc) == "table" and doc or {}
  doc.format = doc.format or M.INDEX_FORMAT
  if type(doc.objects) ~= "table" then doc.objects = {} end
  if type(doc.runs) ~= "table" then doc.runs = {} end
  return doc
end

function S3:read_index()
  local r, err, code = self.client:get_object { bucket = self.bucket, key = self.prefix .. M.INDEX_KEY }
  if not r then
    if code == "NoSuchKey" then return M.normalise_index(nil), nil end
    return nil, err, code
  end
  local doc = json.decode(r.body)
  if type(doc) ~= "table" then
    return nil, "store index s3://" .. self.bucket .. "/" .. self.prefix .. M.INDEX_KEY .. " is not JSON", "BadDocument"
  end
  return M.normalise_index(doc), r.etag
end

local function open_s3(url, opts)
  local rest, query = url:match("^s3://([^?]*)%??(.*)$")
  local bucket, prefix = rest:match("^([^/]+)/?(.*)$")
  if not bucket then return nil, "store: '" .. url .. "' must be s3://bucket/prefix?endpoint=...", "BadURL" end
  local q = parse_query(query)
  for k in pairs(q) do
    if k ~= "endpoint" and k ~= "region" and k ~= "path_style" then
      return nil, "store: unknown parameter '" .. k .. "' in " .. url ..
        " (known: endpoint, region, path_style)", "BadURL"
    end
  end
  if prefix ~= "" and prefix:sub(-1) ~= "/" then prefix = prefix .. "/" end
  local s3 = require "sbot.s3"
  local path_style
  if q.path_style ~= nil then path_style = q.path_style == "true" end
  if path_style == nil then path_style = opts.path_style end
  local client, err = s3.client{
    endpoint = q.endpoint or opts.endpoint, region = q.region or opts.region, path_style = path_style,
    access_key = opts.access_key or os.getenv("AWS_ACCESS_KEY_ID"),
    secret_key = opts.secret_key or os.getenv("AWS_SECRET_ACCESS_KEY"),
    session_token = opts.session_token or os.getenv("AWS_SESSION_TOKEN"),
    tls = opts.tls, timeout = opts.timeout, retries = opts.retries,
  }
  if not client then return nil, err, "BadURL" end
  return setmetatable({ client = client, bucket = bucket, prefix = prefix, kind = "s3",
                        url_base = "s3://" .. bucket .. "/" .. prefix }, S3)
end

--- The index entry of a run: which server got what, when, by which run.
local function run_entry(run, record, st, keys)
  local servers = {}
  for _, r in ipairs(record.results or {}) do
    local id = r.id or "-"
    local s = servers[id] or { status = "ok", components = {}, artifacts = {} }
    servers[id] = s
    s.components[#s.components + 1] = { component = r.component, step = r.step, status = r.status,
      error = r.error and tostring(r.error):match("^[^\n]*") or nil }
    if r.status ~= "ok" and s.status == "ok" then s.status = r.status end
    for _, a in ipairs(r.artifacts or {}) do
      s.artifacts[#s.artifacts + 1] = { key = a.key, sha256 = a.sha256, size = a.size, stored = a.stored }
    end
  end
  for _, s in pairs(servers) do
    s.components = json.array(s.components)
    s.artifacts = json.array(s.artifacts)
  end
  return { run_id = run.id, workflow = record.workflow, mode = record.mode, ok = record.ok,
    started = record.started, ended = record.ended, host = record.host, pid = record.pid,
    site = record.site, args = record.args, servers = servers,
    results = st.url_base .. keys.results, log = st.url_base .. keys.log }
end

--- Keep a finished run in an s3:// store: its results.json and log.jsonl go
-- next to its artifacts (<prefix><run_id>/results.json, .../log.jsonl) and
-- the store's index gains runs[<run_id>] (conditional writes: concurrent
-- runs lose nothing). run: sbot.run's run table {id, store, store_opts,
-- results_file, log_file}; record: the run record. For a file:// store (or
-- none) there is nothing to do: the run directory is the record.
-- -> true | nil, err, code
function M.keep_run(run, record)
  if type(run) ~= "table" or type(record) ~= "table" then error("store.keep_run: expects (run, record)", 2) end
  if not run.store or not run.store:match("^s3://") then return true end
  local st, err, code = M.open(run.store, run.store_opts)
  if not st then return nil, err, code end
  local keys = { results = run.id .. "/results.json", log = run.id .. "/log.jsonl" }
  local meta = { run = run.id, workflow = record.workflow }
  if fsio.stat(run.log_file, true) then
    local ok, perr, pcode = st:put(keys.log, { file = run.log_file }, meta)
    if not ok then return nil, "run record: " .. tostring(perr), pcode end
  end
  local ok, perr, pcode = st:put(keys.results, { file = run.results_file }, meta)
  if not ok then return nil, "run record: " .. tostring(perr), pcode end
  local entry = run_entry(run, record, st, keys)
  local r, ierr, icode = st:update_index(function(doc)
    doc.runs[run.id] = entry
    return doc
  end)
  if not r then return nil, "run record: index: " .. tostring(ierr), icode end
  return true
end

-- The lease object of a lock name (store.lock, store.lock_info).
local function lock_key(st, name)
  return st.prefix .. M.LOCK_PREFIX .. name:gsub("[^%w%.%-_()]", "_") .. ".lease"
end

--- A per-server lock across machines: with an s3:// store, a lease object
-- <prefix>.sbot/locks/<name>.lease (sbot.lease: If-None-Match: * to take it,
-- renewed by a keeper process while the run lasts, taken over after expiry
-- with a warning). o: {label, run_id, ttl}. Returns the lease (release() it),
-- false when the store is not S3 (the local lock is all there is), or nil,
-- err, code ("Locked" when another run holds it).
function M.lock(url, opts, name, o)
  if type(name) ~= "string" or name == "" then error("store.lock: name must be a non-empty string", 2) end
  if not url or not url:match("^s3://") then return false end
  o = o or {}
  local st, err, code = M.open(url, opts)
  if not st then return nil, err, code end
  return require("sbot.lease").acquire(st.client, { bucket = st.bucket, key = lock_key(st, name),
    name = o.label or name, ttl = o.ttl, holder = { run_id = o.run_id, lock = name } })
end

--- Who holds the store lease of `name` (store.lock), without taking it:
-- the lease's info (sbot.lease.read: holder, stale, why, ...), false when
-- nobody holds one or the store is not S3, or nil, err, code.
function M.lock_info(url, opts, name)
  if type(name) ~= "string" or name == "" then error("store.lock_info: name must be a non-empty string", 2) end
  if not url or not url:match("^s3://") then return false end
  local st, err, code = M.open(url, opts)
  if not st then return nil, err, code end
  local info, rerr, rcode = require("sbot.lease").read(st.client, st.bucket, lock_key(st, name))
  if not info then
    if rcode == "NoSuchKey" then return false end
    return nil, rerr, rcode
  end
  return info
end

--- Open a store: "file:///path" or "s3://bucket/prefix?endpoint=...&region=...".
-- "https://S3.example:443/" and "https://s3.example:443" name one endpoint.
local function same_endpoint(a, b)
  local function norm(u)
    local scheme, rest = tostring(u):match("^(%a+)://(.-)/*$")
    if not scheme then return tostring(u) end
    local host, path = rest:match("^([^/]*)(.*)$")
    return scheme:lower() .. "://" .. host:lower() .. path
  end
  return norm(a) == norm(b)
end

local function url_encode(s)
  return (s:gsub("[^%w%-._~/:]", function(c) return string.format("%%%02X", c:byte()) end))
end

--- The store URL and store.open opts to use with a site (a loaded site
-- table). An s3:// store with the site's S3 credentials goes to the site's
-- s3.endpoint: without ?endpoint= the site's endpoint (and region,
-- path_style) is added; a URL that names another endpoint is refused, so the
-- site's keys are never sent to a host the site did not name. Other URLs, or
-- a site without an s3 section: the URL unchanged and no opts. Returns url,
-- opts or nil, err. (`what` names where the URL came from in the error,
-- default "--store".)
function M.for_site(url, site, what)
  if not url or not url:match("^s3://") or not site or not site.s3 then return url, nil end
  local s3 = site.s3
  local q = parse_query(url:match("%?(.*)$"))
  local creds = s3.access_key ~= nil or s3.secret_key ~= nil
  if q.endpoint then
    if creds and not same_endpoint(q.endpoint, s3.endpoint) then
      return nil, (what or "--store") .. " " .. url .. ": endpoint " .. q.endpoint .. " is not the site's s3.endpoint "
        .. s3.endpoint .. "; the site's S3 credentials are sent only to the endpoint the site names "
        .. "(leave ?endpoint= out to use it)"
    end
  else
    local extra = { "endpoint=" .. url_encode(s3.endpoint) }
    if not q.region and s3.region then extra[#extra + 1] = "region=" .. url_encode(s3.region) end
    if q.path_style == nil and s3.path_style ~= nil then
      extra[#extra + 1] = "path_style=" .. tostring(s3.path_style)
    end
    url = url .. (url:find("?", 1, true) and "&" or "?") .. table.concat(extra, "&")
  end
  return url, { access_key = s3.access_key, secret_key = s3.secret_key, tls = s3.tls }
end

function M.open(url, opts)
  if type(url) ~= "string" then error("store.open: url must be a string", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("store.open: opts must be a table", 2) end
  opts = opts or {}
  if url:match("^file://") then return open_file(url) end
  if url:match("^s3://") then return open_s3(url, opts) end
  return nil, "store.open: unsupported URL '" .. url .. "' (use file:///path or s3://bucket/prefix)", "BadURL"
end

return M
