--- sbot.s3: a streaming S3 client over sbot.http, signed by sbot.sigv4.
--
--   local s3 = require "sbot.s3"
--   local c = assert(s3.client{endpoint = "http://127.0.0.1:9000", region = "us-east-1",
--                              access_key = "...", secret_key = "..."})
--   assert(c:put_object{bucket = "b", key = "iso/rhcos.iso", file = "/tmp/rhcos.iso"})
--
-- Layering: C does the protocol mechanics (sigv4.c signs, s3xml.c parses with
-- expat, crypto.c hashes, http.c moves the bytes, straight from and to files);
-- this file is the orchestration: requests, pagination, multipart, errors.
-- Expected failures return nil, "<Code>: <Message> (<METHOD> <bucket>/<key>)", "<Code>";
-- misuse raises. See docs/s3.md.
local http = require "sbot.http"
local sigv4 = require "sbot.sigv4"
local s3xml = require "sbot.s3xml"
local fsio = require "sbot.fsio"
local crypto = require "sbot.crypto"
local json = require "sbot.json"
local log = require "sbot.log"

local M = {}

local MiB = 1024 * 1024
local GiB = 1024 * MiB
local EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

M.defaults = {
  region = "us-east-1",
  part_size = 16 * MiB,          -- multipart part size
  concurrency = 4,               -- parts in flight
  multipart_threshold = 16 * MiB, -- files above this go multipart
  copy_threshold = 5 * GiB,      -- copies above this go multipart (UploadPartCopy)
  copy_part_size = 512 * MiB,
  timeout = 300,                 -- seconds per request (a 16 MiB part on a slow link)
}

-- ---------------------------------------------------------------------------
-- helpers
-- ---------------------------------------------------------------------------

local function argerr(fn, msg) error("s3." .. fn .. ": " .. msg, 3) end

local function check_table(fn, t)
  if type(t) ~= "table" then argerr(fn, "expects a table of arguments, got " .. type(t)) end
  return t
end

local function need_string(fn, t, k)
  local v = t[k]
  if type(v) ~= "string" or v == "" then argerr(fn, "'" .. k .. "' must be a non-empty string") end
  return v
end

local function opt_string(fn, t, k)
  local v = t[k]
  if v ~= nil and type(v) ~= "string" then argerr(fn, "'" .. k .. "' must be a string") end
  return v
end

local is_secret = log.is_secret -- the one test of the secret type

local function unquote(etag)
  if type(etag) ~= "string" then return etag end
  return (etag:gsub('^"(.*)"$', "%1"))
end

local function header(res, name)
  local v = res.headers and res.headers[name]
  if type(v) == "table" then return v[#v] end
  return v
end

local function tolist(v)
  if v == nil then return {} end
  if type(v) == "table" and v[1] ~= nil then return v end
  if type(v) == "table" and next(v) == nil then return {} end
  return { v }
end

local function bool(s) return s == "true" end

local esc = s3xml.escape

--- Bucket names in a vhost URL must be DNS labels.
local function dns_compatible(bucket)
  return bucket:match("^[a-z0-9][a-z0-9%-]*[a-z0-9]$") ~= nil and not bucket:find("%.")
end

local function parse_endpoint(endpoint)
  local scheme, authority = endpoint:match("^(https?)://([^/?#]+)/?$")
  if not scheme then return nil end
  local host, port = authority:match("^(%[.+%]):?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host then return nil end
  if port == "" then port = nil end
  if (scheme == "http" and port == "80") or (scheme == "https" and port == "443") then port = nil end
  return { scheme = scheme, host = host, port = port }
end

local function is_ip_or_local(host)
  return host:match("^%d+%.%d+%.%d+%.%d+$") or host:match("^%[") or host == "localhost"
    or host:match("%.localhost$")
end

-- ---------------------------------------------------------------------------
-- the client
-- ---------------------------------------------------------------------------

local Client = {}
Client.__index = Client
Client.__name = "sbot.s3.client"

--- s3.client{endpoint, region, access_key, secret_key, session_token, path_style,
--             tls, timeout, retries, part_size, concurrency, multipart_threshold,
--             copy_threshold}
function M.client(opts)
  check_table("client", opts)
  local known = { endpoint = 1, region = 1, access_key = 1, secret_key = 1, session_token = 1,
    path_style = 1, tls = 1, timeout = 1, retries = 1, part_size = 1, concurrency = 1,
    multipart_threshold = 1, copy_threshold = 1, copy_part_size = 1 }
  for k in pairs(opts) do
    if not known[k] then argerr("client", "unknown option '" .. tostring(k) .. "'") end
  end
  local region = opts.region or M.defaults.region
  if type(region) ~= "string" then argerr("client", "'region' must be a string") end
  local endpoint = opts.endpoint or ("https://s3." .. region .. ".amazonaws.com")
  if type(endpoint) ~= "string" then argerr("client", "'endpoint' must be a string") end
  local ep = parse_endpoint(endpoint)
  if not ep then
    return nil, "s3.client: endpoint '" .. endpoint .. "' must be http(s)://host[:port]", "BadEndpoint"
  end
  local access = opts.access_key or os.getenv("AWS_ACCESS_KEY_ID")
  local secret = opts.secret_key or os.getenv("AWS_SECRET_ACCESS_KEY")
  local token = opts.session_token or os.getenv("AWS_SESSION_TOKEN")
  if token == "" then token = nil end
  if access == nil or access == "" then
    return nil, "s3.client: no access_key (give access_key or set AWS_ACCESS_KEY_ID)", "NoCredentials"
  end
  if secret == nil or secret == "" then
    return nil, "s3.client: no secret_key (give secret_key or set AWS_SECRET_ACCESS_KEY)", "NoCredentials"
  end
  for k, v in pairs { access_key = access, secret_key = secret, session_token = token } do
    if type(v) ~= "string" and not is_secret(v) then
      argerr("client", "'" .. k .. "' must be a string or a secret")
    end
  end
  -- the signing secrets never reach a log line
  if type(secret) == "string" then log.add_secret(secret) end
  if type(token) == "string" then log.add_secret(token) end
  local path_style = opts.path_style
  if path_style == nil then path_style = is_ip_or_local(ep.host) and true or false end
  local function num(k, min)
    local v = opts[k] or M.defaults[k]
    if math.type(v) ~= "integer" or v < min then
      argerr("client", "'" .. k .. "' must be an integer >= " .. min)
    end
    return v
  end
  local c = setmetatable({
    endpoint = endpoint, ep = ep, region = region, path_style = path_style,
    tls = opts.tls, timeout = opts.timeout or M.defaults.timeout, retries = opts.retries,
    part_size = num("part_size", 5 * MiB), concurrency = num("concurrency", 1),
    multipart_threshold = num("multipart_threshold", 5 * MiB),
    copy_threshold = num("copy_threshold", 5 * MiB), copy_part_size = num("copy_part_size", 5 * MiB),
  }, Client)
  -- credentials live in a closure, not in a field a pretty-printer would show
  c._creds = function() return access, secret, token end
  local given = {}
  for k, v in pairs(opts) do given[k] = v end
  given.access_key, given.secret_key, given.session_token = access, secret, token
  c._given = function() return given end
  return c
end

--- The options this client was made with (credentials as they were given:
-- strings or secret objects), for building the same client elsewhere (a
-- keeper process renewing a lease). Never log or serialise it as it is.
function Client:options()
  local out = {}
  for k, v in pairs(self._given()) do out[k] = v end
  return out
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9,
  Oct = 10, Nov = 11, Dec = 12 }

--- "Tue, 01 Dec 2026 10:00:00 GMT" (an HTTP date: Date, Last-Modified) -> epoch seconds, or nil.
function M.parse_http_date(s)
  local d, mon, y, h, mi, se = tostring(s):match("^%a+, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d or not MONTHS[mon] then return nil end
  y, mon = tonumber(y), MONTHS[mon]
  local yy = mon <= 2 and y - 1 or y
  local era = (yy >= 0 and yy or yy - 399) // 400
  local yoe = yy - era * 400
  local doy = (153 * (mon + (mon > 2 and -3 or 9)) + 2) // 5 + tonumber(d) - 1
  local days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(se)
end

--- Host, raw path and human name of (bucket, key).
function Client:_target(bucket, key)
  local authority = self.ep.host .. (self.ep.port and (":" .. self.ep.port) or "")
  local where = bucket and (bucket .. (key and ("/" .. key) or "")) or "(service)"
  if not bucket then return authority, "/", where end
  if self.path_style or not dns_compatible(bucket) then
    -- no trailing "/" after a bare bucket (s3rver rejects it)
    return authority, "/" .. bucket .. (key and ("/" .. key) or ""), where
  end
  return bucket .. "." .. authority, "/" .. (key or ""), where
end

--- Build the http.request table of one signed S3 request.
-- r: {method, bucket, key, query, headers, body, body_file, payload_hash,
--     output_file, progress, timeout}
function Client:_build(r)
  local host, path, where = self:_target(r.bucket, r.key)
  local access, secret, token = self._creds()
  local payload = r.payload_hash
  if not payload then
    payload = r.body and crypto.hex(crypto.sha256(r.body)) or EMPTY_SHA256
  end
  local signed = sigv4.sign{
    method = r.method, path = path, query = r.query, host = host, headers = r.headers,
    payload_hash = payload, access_key = access, secret_key = secret, session_token = token,
    region = self.region, service = "s3",
  }
  local headers = {}
  for k, v in pairs(r.headers or {}) do headers[k] = v end
  for k, v in pairs(signed.headers) do headers[k] = v end
  -- libcurl removes "." and ".." segments from a URL path; S3 keys keep
  -- them, so they go on the wire percent-encoded (S3 decodes them back and
  -- signs the decoded form, which is what was signed here).
  local wire = signed.uri
  local p, q = wire:match("^([^?]*)(.*)$")
  if p:find("/%.%.?/") or p:find("/%.%.?$") then
    p = ("/" .. p:sub(2) .. "/"):gsub("/(%.%.?)/", function(d) return "/" .. d:gsub("%.", "%%2E") .. "/" end)
    p = p:gsub("/(%.%.?)/", function(d) return "/" .. d:gsub("%.", "%%2E") .. "/" end)
    p = p:sub(1, -2)
    wire = p .. q
  end
  local url = self.ep.scheme .. "://" .. host .. wire
  return {
    method = r.method, url = url, headers = headers, body = r.body, body_file = r.body_file,
    body_offset = r.body_offset, body_length = r.body_length,
    output_file = r.output_file, progress = r.progress, tls = self.tls,
    timeout = r.timeout or self.timeout, retries = self.retries,
    max_body = r.max_body,
  }, where
end

--- Turn a non-success answer into nil, message, code.
local function s3_error(method, where, res, not_found_code)
  local code, message
  if res.body and res.body ~= "" then
    local root, doc = s3xml.parse(res.body)
    if root == "Error" and type(doc) == "table" then
      code, message = doc.Code, doc.Message
    end
  end
  if not code then
    local by_status = { [301] = "PermanentRedirect", [304] = "NotModified", [400] = "BadRequest",
      [403] = "AccessDenied", [404] = not_found_code or "NotFound", [405] = "MethodNotAllowed",
      [409] = "Conflict", [412] = "PreconditionFailed", [416] = "InvalidRange",
      [501] = "NotImplemented", [503] = "SlowDown" }
    code = by_status[res.status] or ("HTTP" .. tostring(res.status))
  end
  message = message or ("HTTP " .. tostring(res.status))
  return nil, string.format("%s: %s (%s %s)", code, message, method, where), code
end
M._s3_error = s3_error

--- One request: returns the response for an expected status, else nil, err, code.
function Client:_call(r)
  local req, where = self:_build(r)
  local res, err, code = http.request(req)
  if not res then
    return nil, string.format("%s %s: %s", r.method, where, err), code
  end
  local ok = r.ok or { [200] = true, [204] = true }
  if not ok[res.status] then return s3_error(r.method, where, res, r.not_found) end
  return res, where
end

--- A request whose answer is an XML document: returns root, table.
function Client:_xml(r)
  local res, where, code = self:_call(r)
  if not res then return nil, where, code end
  local root, doc = s3xml.parse(res.body or "")
  if not root then
    return nil, string.format("%s %s: bad XML answer: %s", r.method, where, doc), "BadResponse"
  end
  if r.root and root ~= r.root and root ~= "Error" then
    return nil, string.format("%s %s: expected <%s> in the answer, got <%s> (server does not support this call?)",
      r.method, where, r.root, root), "BadResponse"
  end
  if root == "Error" then
    -- an error inside a 200 answer (CompleteMultipartUpload, CopyObject)
    local d = type(doc) == "table" and doc or {}
    local c = d.Code or "InternalError"
    return nil, string.format("%s: %s (%s %s)", c, d.Message or "error in a 200 answer", r.method, where), c
  end
  return root, type(doc) == "table" and doc or {}, res
end

local function bucket_arg(fn, a)
  if type(a) == "string" then return { bucket = a } end
  check_table(fn, a)
  need_string(fn, a, "bucket")
  return a
end

local function key_args(fn, a)
  check_table(fn, a)
  need_string(fn, a, "bucket")
  need_string(fn, a, "key")
  return a
end

local function xml_body(s) return { ["Content-Type"] = "application/xml", ["Content-MD5"] = crypto.base64_encode(crypto.md5(s)) } end

-- ---------------------------------------------------------------------------
-- buckets
-- ---------------------------------------------------------------------------

function Client:list_buckets()
  local root, doc, code = self:_xml{ method = "GET", root = "ListAllMyBucketsResult" }
  if not root then return nil, doc, code end
  local out = {}
  for _, b in ipairs(tolist(doc.Buckets and doc.Buckets.Bucket)) do
    out[#out + 1] = { name = b.Name, creation_date = b.CreationDate }
  end
  return out
end

function Client:head_bucket(a)
  a = bucket_arg("head_bucket", a)
  local res, err, code = self:_call{ method = "HEAD", bucket = a.bucket, not_found = "NoSuchBucket" }
  if not res then return nil, err, code end
  return true
end

function Client:create_bucket(a)
  a = bucket_arg("create_bucket", a)
  local body, headers
  local region = a.region or self.region
  if region ~= "us-east-1" then
    body = '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' ..
      "<LocationConstraint>" .. esc(region) .. "</LocationConstraint></CreateBucketConfiguration>"
    headers = { ["Content-Type"] = "application/xml" }
  end
  local res, err, code = self:_call{ method = "PUT", bucket = a.bucket, body = body, headers = headers }
  if not res then
    if code == "BucketAlreadyOwnedByYou" then return true, "already owned" end
    if code == "BucketAlreadyExists" and self:head_bucket(a.bucket) then
      -- some servers (and us-east-1's legacy behaviour) say "exists" for our own bucket
      return true, "already owned"
    end
    return nil, err, code
  end
  return true
end

function Client:delete_bucket(a)
  a = bucket_arg("delete_bucket", a)
  local res, err, code = self:_call{ method = "DELETE", bucket = a.bucket, not_found = "NoSuchBucket" }
  if not res then return nil, err, code end
  return true
end

function Client:get_bucket_versioning(a)
  a = bucket_arg("get_bucket_versioning", a)
  local root, doc, code = self:_xml{ method = "GET", bucket = a.bucket, query = { versioning = "" },
                                            root = "VersioningConfiguration" }
  if not root then return nil, doc, code end
  return { status = doc.Status ~= "" and doc.Status or nil, mfa_delete = doc.MfaDelete }
end

function Client:put_bucket_versioning(a)
  a = bucket_arg("put_bucket_versioning", a)
  if a.status ~= "Enabled" and a.status ~= "Suspended" then
    argerr("put_bucket_versioning", "'status' must be \"Enabled\" or \"Suspended\"")
  end
  local body = '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>' ..
    a.status .. "</Status></VersioningConfiguration>"
  local res, err, code = self:_call{ method = "PUT", bucket = a.bucket, query = { versioning = "" },
    body = body, headers = xml_body(body) }
  if not res then return nil, err, code end
  return true
end

function Client:get_bucket_policy(a)
  a = bucket_arg("get_bucket_policy", a)
  local res, err, code = self:_call{ method = "GET", bucket = a.bucket, query = { policy = "" },
    not_found = "NoSuchBucketPolicy" }
  if not res then return nil, err, code end
  return res.body
end

function Client:put_bucket_policy(a)
  a = bucket_arg("put_bucket_policy", a)
  local policy = a.policy
  if type(policy) == "table" then policy = json.encode(policy) end
  if type(policy) ~= "string" then argerr("put_bucket_policy", "'policy' must be a JSON string or a table") end
  local res, err, code = self:_call{ method = "PUT", bucket = a.bucket, query = { policy = "" },
    body = policy, headers = { ["Content-Type"] = "application/json", ["Content-MD5"] = crypto.base64_encode(crypto.md5(policy)) } }
  if not res then return nil, err, code end
  return true
end

function Client:delete_bucket_policy(a)
  a = bucket_arg("delete_bucket_policy", a)
  local res, err, code = self:_call{ method = "DELETE", bucket = a.bucket, query = { policy = "" } }
  if not res then return nil, err, code end
  return true
end

local function days_of(v)
  local n = math.tointeger(tonumber(v or ""))
  return n
end

--- Lifecycle rules as plain tables: {id, prefix, status, noncurrent_days,
-- abort_multipart_days, expiration_days}. Other rule parts (transitions, tag
-- filters) are kept in `other = true` so a caller knows the rule is not only
-- what it sees.
function Client:get_bucket_lifecycle(a)
  a = bucket_arg("get_bucket_lifecycle", a)
  local res, err, code = self:_call{ method = "GET", bucket = a.bucket, query = { lifecycle = "" },
    not_found = "NoSuchLifecycleConfiguration" }
  if not res then return nil, err, code end
  local root, doc = s3xml.parse(res.body or "", { "Rule" })
  if root ~= "LifecycleConfiguration" or type(doc) ~= "table" then
    return nil, "GET " .. a.bucket .. "?lifecycle: expected <LifecycleConfiguration>, got " ..
      tostring(root or doc), "BadResponse"
  end
  local out = {}
  for _, r in ipairs(doc.Rule or {}) do
    local filter = type(r.Filter) == "table" and r.Filter or {}
    local prefix = filter.Prefix or r.Prefix
    if type(prefix) ~= "string" then prefix = "" end
    local rule = { id = r.ID, status = r.Status, prefix = prefix,
      noncurrent_days = type(r.NoncurrentVersionExpiration) == "table" and days_of(r.NoncurrentVersionExpiration.NoncurrentDays) or nil,
      abort_multipart_days = type(r.AbortIncompleteMultipartUpload) == "table"
        and days_of(r.AbortIncompleteMultipartUpload.DaysAfterInitiation) or nil,
      expiration_days = type(r.Expiration) == "table" and days_of(r.Expiration.Days) or nil }
    if r.Transition or r.NoncurrentVersionTransition or filter.And or filter.Tag
      or (type(r.Expiration) == "table" and r.Expiration.Days == nil) then
      rule.other = true
    end
    out[#out + 1] = rule
  end
  return out
end

--- put_bucket_lifecycle{bucket, rules = {{id, prefix, status = "Enabled",
--- noncurrent_days, abort_multipart_days, expiration_days}, ...}}: replaces
-- the bucket's whole lifecycle configuration.
function Client:put_bucket_lifecycle(a)
  a = bucket_arg("put_bucket_lifecycle", a)
  if type(a.rules) ~= "table" or #a.rules == 0 then argerr("put_bucket_lifecycle", "'rules' must be a non-empty list") end
  local b = { '<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' }
  for i, r in ipairs(a.rules) do
    if type(r) ~= "table" then argerr("put_bucket_lifecycle", "rules[" .. i .. "] must be a table") end
    for _, k in ipairs { "noncurrent_days", "abort_multipart_days", "expiration_days" } do
      if r[k] ~= nil and (math.type(r[k]) ~= "integer" or r[k] < 1) then
        argerr("put_bucket_lifecycle", "rules[" .. i .. "]." .. k .. " must be a positive integer")
      end
    end
    b[#b + 1] = "<Rule>" .. (r.id and ("<ID>" .. esc(r.id) .. "</ID>") or "") ..
      "<Filter><Prefix>" .. esc(r.prefix or "") .. "</Prefix></Filter>" ..
      "<Status>" .. (r.status or "Enabled") .. "</Status>"
    if r.expiration_days then b[#b + 1] = "<Expiration><Days>" .. r.expiration_days .. "</Days></Expiration>" end
    if r.noncurrent_days then
      b[#b + 1] = "<NoncurrentVersionExpiration><NoncurrentDays>" .. r.noncurrent_days ..
        "</NoncurrentDays></NoncurrentVersionExpiration>"
    end
    if r.abort_multipart_days then
      b[#b + 1] = "<AbortIncompleteMultipartUpload><DaysAfterInitiation>" .. r.abort_multipart_days ..
        "</DaysAfterInitiation></AbortIncompleteMultipartUpload>"
    end
    b[#b + 1] = "</Rule>"
  end
  b[#b + 1] = "</LifecycleConfiguration>"
  local body = table.concat(b)
  local res, err, code = self:_call{ method = "PUT", bucket = a.bucket, query = { lifecycle = "" },
    body = body, headers = xml_body(body) }
  if not res then return nil, err, code end
  return true
end

function Client:delete_bucket_lifecycle(a)
  a = bucket_arg("delete_bucket_lifecycle", a)
  local res, err, code = self:_call{ method = "DELETE", bucket = a.bucket, query = { lifecycle = "" } }
  if not res then return nil, err, code end
  return true
end

-- ---------------------------------------------------------------------------
-- listing (iterators: one page in memory at a time)
-- ---------------------------------------------------------------------------

--- A paging iterator: fetch(state) returns items, next_state (nil at the end)
-- or nil, err, code. The iterator yields items; on failure it yields
-- false, err, code once and then ends.
local function pager(fetch, state)
  local items, i, done, failed = {}, 0, false, false
  return function()
    while true do
      if failed then return nil end
      i = i + 1
      if items[i] ~= nil then return items[i] end
      if done then return nil end
      local got, nxt, code = fetch(state)
      if not got then
        failed = true
        return false, nxt, code
      end
      items, i, state = got, 0, nxt
      if nxt == nil then done = true end
    end
  end
end

function Client:list_objects(a)
  check_table("list_objects", a)
  need_string("list_objects", a, "bucket")
  for _, k in ipairs { "prefix", "delimiter", "start_after" } do opt_string("list_objects", a, k) end
  local self_ = self
  return pager(function(token)
    local q = { ["list-type"] = "2", prefix = a.prefix, delimiter = a.delimiter,
                ["max-keys"] = a.max_keys and tostring(a.max_keys) or nil }
    if token then q["continuation-token"] = token elseif a.start_after then q["start-after"] = a.start_after end
    local root, doc, code = self_:_xml{ method = "GET", bucket = a.bucket, query = q,
                                        not_found = "NoSuchBucket", root = "ListBucketResult" }
    if not root then return nil, doc, code end
    local out = {}
    for _, o in ipairs(tolist(doc.Contents)) do
      out[#out + 1] = { key = o.Key, size = tonumber(o.Size), etag = unquote(o.ETag),
                        last_modified = o.LastModified, storage_class = o.StorageClass }
    end
    for _, p in ipairs(tolist(doc.CommonPrefixes)) do out[#out + 1] = { prefix = p.Prefix } end
    local nxt = bool(doc.IsTruncated) and doc.NextContinuationToken or nil
    if bool(doc.IsTruncated) and not nxt then
      return nil, "s3 list_objects " .. a.bucket .. ": truncated answer without NextContinuationToken", "BadResponse"
    end
    return out, nxt
  end, nil)
end

--- All objects at once (convenience for small listings): list or nil, err, code.
function Client:list_objects_all(a)
  local out = {}
  for o, err, code in self:list_objects(a) do
    if not o then return nil, err, code end
    out[#out + 1] = o
  end
  return out
end

function Client:list_object_versions(a)
  check_table("list_object_versions", a)
  need_string("list_object_versions", a, "bucket")
  local self_ = self
  return pager(function(marker)
    local q = { versions = "", prefix = a.prefix, delimiter = a.delimiter,
                ["max-keys"] = a.max_keys and tostring(a.max_keys) or nil }
    if marker then
      q["key-marker"] = marker.key
      q["version-id-marker"] = marker.version
    end
    local root, doc, code = self_:_xml{ method = "GET", bucket = a.bucket, query = q,
                                        not_found = "NoSuchBucket", root = "ListVersionsResult" }
    if not root then return nil, doc, code end
    local out = {}
    for _, v in ipairs(tolist(doc.Version)) do
      out[#out + 1] = { key = v.Key, version_id = v.VersionId, is_latest = bool(v.IsLatest),
        size = tonumber(v.Size), etag = unquote(v.ETag), last_modified = v.LastModified,
        delete_marker = false }
    end
    for _, v in ipairs(tolist(doc.DeleteMarker)) do
      out[#out + 1] = { key = v.Key, version_id = v.VersionId, is_latest = bool(v.IsLatest),
        last_modified = v.LastModified, delete_marker = true }
    end
    table.sort(out, function(x, y)
      if x.key ~= y.key then return x.key < y.key end
      return (x.last_modified or "") > (y.last_modified or "")
    end)
    local nxt
    if bool(doc.IsTruncated) then
      if not doc.NextKeyMarker then -- asking again would give the same page forever
        return nil, "s3 list_object_versions " .. a.bucket .. ": truncated answer without NextKeyMarker", "BadResponse"
      end
      nxt = { key = doc.NextKeyMarker, version = doc.NextVersionIdMarker }
    end
    return out, nxt
  end, nil)
end

function Client:list_multipart_uploads(a)
  a = bucket_arg("list_multipart_uploads", a)
  local out, marker = {}, nil
  repeat
    local q = { uploads = "", prefix = a.prefix }
    if marker then
      q["key-marker"], q["upload-id-marker"] = marker.key, marker.id
    end
    local root, doc, code = self:_xml{ method = "GET", bucket = a.bucket, query = q,
                                       root = "ListMultipartUploadsResult" }
    if not root then return nil, doc, code end
    for _, u in ipairs(tolist(doc.Upload)) do
      out[#out + 1] = { key = u.Key, upload_id = u.UploadId, initiated = u.Initiated }
    end
    marker = bool(doc.IsTruncated) and { key = doc.NextKeyMarker, id = doc.NextUploadIdMarker } or nil
    if marker and not marker.key then -- asking again would give the same page forever
      return nil, "s3 list_multipart_uploads " .. a.bucket .. ": truncated answer without NextKeyMarker", "BadResponse"
    end
  until not marker
  return out
end

-- ---------------------------------------------------------------------------
-- objects
-- ---------------------------------------------------------------------------

local function object_info(res)
  local meta = {}
  for k, v in pairs(res.headers or {}) do
    local name = k:match("^x%-amz%-meta%-(.+)$")
    if name then meta[name] = type(v) == "table" and table.concat(v, ",") or v end
  end
  return {
    size = tonumber(header(res, "content-length")),
    etag = unquote(header(res, "etag")),
    content_type = header(res, "content-type"),
    last_modified = header(res, "last-modified"),
    version_id = header(res, "x-amz-version-id"),
    date = header(res, "date"), -- the server's clock when it answered
    metadata = meta,
  }
end

function Client:head_object(a)
  key_args("head_object", a)
  local q = a.version_id and { versionId = a.version_id } or nil
  local res, err, code = self:_call{ method = "HEAD", bucket = a.bucket, key = a.key, query = q,
                                     not_found = "NoSuchKey" }
  if not res then return nil, err, code end
  return object_info(res)
end

local function range_header(range)
  if range == nil then return nil end
  if type(range) == "string" then return range end
  if type(range) == "table" and math.type(range[1]) == "integer" then
    return "bytes=" .. range[1] .. "-" .. (range[2] and tostring(range[2]) or "")
  end
  error("s3.get_object: 'range' must be {first, last} or a \"bytes=...\" string", 3)
end

--- get_object{bucket, key, file, range, version_id, if_match, if_none_match,
---            progress, verify_sha256}
function Client:get_object(a)
  key_args("get_object", a)
  opt_string("get_object", a, "file")
  local headers = { Range = range_header(a.range), ["If-Match"] = a.if_match,
                    ["If-None-Match"] = a.if_none_match }
  local q = a.version_id and { versionId = a.version_id } or nil
  local res, err, code = self:_call{ method = "GET", bucket = a.bucket, key = a.key, query = q,
    headers = headers, output_file = a.file, progress = a.progress, not_found = "NoSuchKey",
    ok = { [200] = true, [206] = true }, max_body = a.max_body }
  if not res then return nil, err, code end
  local info = object_info(res)
  if a.file then
    info.file = a.file
    local st = fsio.stat(a.file)
    info.size = st and st.size or info.size
  else
    info.body = res.body
    info.size = #res.body
  end
  info.status = res.status
  local want = info.metadata["sbot-sha256"]
  if a.verify_sha256 and want and res.status == 200 then
    local got = a.file and crypto.sha256_file(a.file) or crypto.sha256(res.body)
    got = got and crypto.hex(got)
    if got ~= want then
      if a.file then fsio.remove(a.file) end
      return nil, string.format("Checksum: SHA-256 %s of the download differs from the stored %s (GET %s/%s)",
        tostring(got), want, a.bucket, a.key), "Checksum"
    end
    info.sha256 = got
  end
  return info
end

local function put_headers(a)
  local h = { ["Content-Type"] = a.content_type or "application/octet-stream" }
  if a.metadata ~= nil then
    if type(a.metadata) ~= "table" then error("s3.put_object: 'metadata' must be a table", 4) end
    for k, v in pairs(a.metadata) do
      if type(k) ~= "string" or not k:match("^[%w%-_]+$") then
        error("s3.put_object: metadata name '" .. tostring(k) .. "' must be letters, digits, '-' or '_'", 4)
      end
      h["x-amz-meta-" .. k:lower()] = tostring(v)
    end
  end
  return h
end

--- The part size used for a file of `size` bytes: `part_size`, raised to a
-- whole number of MiB when the file would need more than 10,000 parts.
local function effective_part_size(size, part_size)
  if (size + part_size - 1) // part_size > 10000 then
    part_size = ((size + 9999) // 10000 + MiB - 1) // MiB * MiB
  end
  return part_size
end

local function part_ranges(size, part_size, first, last)
  local list = {}
  for n = first, last do
    local off = (n - 1) * part_size
    list[#list + 1] = { off, math.min(part_size, size - off) }
  end
  return list
end

--- hash_file{file, part_size} -> {file, size, mtime, sha256, part_size, parts}
-- One read of the file giving its SHA-256 and, when put_object would upload
-- it in parts (size above multipart_threshold), each part's SHA-256 too
-- (`parts`, hex, for parts of `part_size`). put_object{hashes = ...} then
-- sends the file without hashing it again: the server checks every part
-- against the digest signed with it, so a file changed since it was hashed
-- is refused (XAmzContentSHA256Mismatch), never stored.
function Client:hash_file(a)
  check_table("hash_file", a)
  need_string("hash_file", a, "file")
  local st, serr, scode = fsio.stat(a.file, true)
  if not st or st.type ~= "file" then
    return nil, "s3 hash_file: " .. (serr or (a.file .. " is not a regular file")), scode or "BadFile"
  end
  local out = { file = a.file, size = st.size, mtime = st.mtime }
  if st.size <= self.multipart_threshold then
    local sum, herr = crypto.sha256_file(a.file)
    if not sum then return nil, "s3 hash_file: " .. herr, "BadFile" end
    out.sha256 = crypto.hex(sum)
    return out
  end
  local part_size = effective_part_size(st.size, a.part_size or self.part_size)
  local nparts = (st.size + part_size - 1) // part_size
  -- two worker threads at once: the parts' digests, and the whole file's
  -- (one range); each byte is hashed twice either way, in parallel this way
  local parts_job <close> = crypto.sha256_ranges(a.file, part_ranges(st.size, part_size, 1, nparts))
  local whole_job <close> = crypto.sha256_ranges(a.file, { { 0, st.size } })
  local digests, herr = parts_job:wait()
  if not digests then return nil, "s3 hash_file: " .. herr, "BadFile" end
  local whole, werr = whole_job:wait()
  if not whole then return nil, "s3 hash_file: " .. werr, "BadFile" end
  out.parts = {}
  for n, d in ipairs(digests) do out.parts[n] = crypto.hex(d) end
  out.sha256 = crypto.hex(whole[1])
  out.part_size = part_size
  return out
end

--- put_object{bucket, key, body | file, content_type, metadata, if_none_match,
---            if_match, progress, sha256_metadata, hashes, on_upload}
-- -> {etag, size, sha256, version_id}
function Client:put_object(a)
  key_args("put_object", a)
  if (a.body == nil) == (a.file == nil) then argerr("put_object", "give exactly one of 'body' or 'file'") end
  if a.body ~= nil and type(a.body) ~= "string" then argerr("put_object", "'body' must be a string") end
  opt_string("put_object", a, "file")
  if a.if_none_match ~= nil and a.if_none_match ~= "*" then
    argerr("put_object", "'if_none_match' must be \"*\"")
  end
  opt_string("put_object", a, "if_match")
  if a.hashes ~= nil and (a.file == nil or type(a.hashes) ~= "table" or type(a.hashes.sha256) ~= "string") then
    argerr("put_object", "'hashes' must be what hash_file returned, with 'file'")
  end
  if a.on_upload ~= nil and type(a.on_upload) ~= "function" then argerr("put_object", "'on_upload' must be a function") end
  local headers = put_headers(a)
  local size, sha
  if a.file then
    local st, serr, scode = fsio.stat(a.file)
    if not st or st.type ~= "file" then
      return nil, "s3 put_object " .. a.bucket .. "/" .. a.key .. ": " ..
        (serr or (a.file .. " is not a regular file")), scode or "BadFile"
    end
    size = st.size
    if a.hashes and (a.hashes.size ~= size or (a.hashes.mtime and a.hashes.mtime ~= st.mtime)) then
      return nil, "s3 put_object " .. a.bucket .. "/" .. a.key .. ": " .. a.file ..
        " changed since it was hashed (size or modification time)", "FileChanged"
    end
    if size > self.multipart_threshold then return self:_multipart_put(a, headers, size) end
    if a.hashes then
      sha = a.hashes.sha256
    else
      local herr
      sha, herr = crypto.sha256_file(a.file)
      if not sha then return nil, "s3 put_object " .. a.bucket .. "/" .. a.key .. ": " .. herr, "BadFile" end
      sha = crypto.hex(sha)
    end
  else
    size = #a.body
    sha = crypto.hex(crypto.sha256(a.body))
  end
  if a.sha256_metadata then headers["x-amz-meta-sbot-sha256"] = sha end
  if a.if_none_match then headers["If-None-Match"] = "*" end
  if a.if_match then headers["If-Match"] = a.if_match end
  local res, err, code = self:_call{ method = "PUT", bucket = a.bucket, key = a.key, headers = headers,
    body = a.body, body_file = a.file, payload_hash = sha, progress = a.progress }
  if not res then return nil, err, code end
  return { etag = unquote(header(res, "etag")), size = size, sha256 = sha,
           version_id = header(res, "x-amz-version-id") }
end

--- update_json{bucket, key, update = function(doc, info) -> new_doc | nil, attempts = 25}
-- -> {changed, etag, version_id, attempts, doc} | nil, err, code
-- A read-modify-write of a JSON document that concurrent writers cannot
-- corrupt: GET it (doc = nil when there is none), let `update` build the new
-- document from what was read, PUT it with `If-Match` the ETag read
-- (`If-None-Match: *` when there was none). When another writer came first
-- (412 PreconditionFailed, 409 ConditionalRequestConflict, 404 for an
-- If-Match on a document deleted meanwhile), read again and redo the update,
-- after a short random pause. `update` must build from the doc it is given
-- (it may be called several times) and returns nil for "nothing to change":
-- then nothing is written. A document that is not JSON is an error, never
-- overwritten.
function Client:update_json(a)
  key_args("update_json", a)
  if type(a.update) ~= "function" then argerr("update_json", "'update' must be a function") end
  local attempts = a.attempts or 25
  local where = a.bucket .. "/" .. a.key
  for attempt = 1, attempts do
    local doc, etag
    local got, err, code = self:get_object{ bucket = a.bucket, key = a.key }
    if got then
      local derr
      doc, derr = json.decode(got.body)
      if type(doc) ~= "table" then
        return nil, "s3 update_json " .. where .. ": the document is not a JSON object (" ..
          tostring(derr or type(doc)) .. "); not overwriting it", "BadDocument"
      end
      etag = got.etag
    elseif code ~= "NoSuchKey" then
      return nil, err, code
    end
    local new = a.update(doc, { etag = etag, attempt = attempt })
    if new == nil then return { changed = false, etag = etag, attempts = attempt, doc = doc } end
    local put, perr, pcode = self:put_object{ bucket = a.bucket, key = a.key, content_type = "application/json",
      body = json.encode(new, { indent = true }) .. "\n",
      if_match = etag, if_none_match = not etag and "*" or nil }
    if put then
      return { changed = true, etag = put.etag, version_id = put.version_id, attempts = attempt, doc = new }
    end
    if pcode ~= "PreconditionFailed" and pcode ~= "ConditionalRequestConflict" and pcode ~= "NoSuchKey" then
      return nil, perr, pcode
    end
    log.debug("s3 update_json: another writer came first; reading again",
      { bucket = a.bucket, key = a.key, attempt = attempt, code = pcode })
    -- a random pause (up to 50 ms, growing) spreads writers that collided
    local n = string.unpack("I2", crypto.random_bytes(2))
    require("sbot.keeper").sleep((n % 50 + 1) / 1000 * math.min(attempt, 4))
  end
  return nil, "s3 update_json " .. where .. ": still conflicting after " .. attempts ..
    " attempts (too many concurrent writers?)", "ConditionalRequestConflict"
end

--- Abort a multipart upload (also used on every failure path).
function Client:abort_multipart_upload(a)
  key_args("abort_multipart_upload", a)
  need_string("abort_multipart_upload", a, "upload_id")
  local res, err, code = self:_call{ method = "DELETE", bucket = a.bucket, key = a.key,
    query = { uploadId = a.upload_id }, not_found = "NoSuchUpload" }
  if not res then return nil, err, code end
  return true
end

local function complete_body(parts)
  local b = { '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' }
  for _, p in ipairs(parts) do
    b[#b + 1] = string.format("<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
      p.number, esc('"' .. p.etag .. '"'))
  end
  b[#b + 1] = "</CompleteMultipartUpload>"
  return table.concat(b)
end

function Client:_initiate(a, headers)
  local root, doc, code = self:_xml{ method = "POST", bucket = a.bucket, key = a.key,
    query = { uploads = "" }, headers = headers, root = "InitiateMultipartUploadResult" }
  if not root then return nil, doc, code end
  if type(doc.UploadId) ~= "string" or doc.UploadId == "" then
    return nil, "s3 multipart " .. a.bucket .. "/" .. a.key .. ": InitiateMultipartUpload answer has no UploadId",
      "BadResponse"
  end
  return doc.UploadId
end

function Client:_complete(a, upload_id, parts, extra)
  local body = complete_body(parts)
  local headers = { ["Content-Type"] = "application/xml" }
  for k, v in pairs(extra or {}) do headers[k] = v end
  local root, doc, res = self:_xml{ method = "POST", bucket = a.bucket, key = a.key,
    query = { uploadId = upload_id }, body = body, headers = headers }
  if not root then return nil, doc, res end
  if root ~= "CompleteMultipartUploadResult" then
    return nil, "s3 multipart " .. a.bucket .. "/" .. a.key .. ": unexpected answer <" .. root .. ">", "BadResponse"
  end
  doc._version_id = header(res, "x-amz-version-id")
  return doc
end

--- Run body(upload_id) with AbortMultipartUpload on any failure, raised
-- error or interrupt; the raised error is re-raised after the abort.
function Client:_with_upload(a, upload_id, body)
  local ok, r, err, code = pcall(body)
  if ok and r then return r end
  local aok, aerr = self:abort_multipart_upload{ bucket = a.bucket, key = a.key, upload_id = upload_id }
  if not aok then
    log.warn("s3: could not abort multipart upload " .. upload_id .. " of " .. a.bucket .. "/" ..
      a.key .. ": " .. tostring(aerr))
  else
    log.debug("s3: aborted multipart upload", { bucket = a.bucket, key = a.key, upload_id = upload_id })
  end
  if not ok then error(r, 0) end
  return nil, err, code
end

--- Multipart upload of a file. Each part is sent straight from the file
-- (http body_file with body_offset/body_length), `concurrency` at a time via
-- http.batch, signed with its own SHA-256. The parts of the next wave are
-- hashed by crypto.sha256_ranges in a worker thread while the current wave
-- is on the wire; the same read feeds the whole-object crypto.hasher, so the
-- file is read once for hashing (and once by the transfers, from the page
-- cache) and nothing is staged on disk.
-- With sha256_metadata the whole-object digest must be known before the
-- upload starts (it is metadata), so one hashing read (parts and whole)
-- comes first and each part is hashed again before it goes out and checked
-- against it (a file changed underneath is an error). With `hashes` (from
-- hash_file) every digest is known already: nothing is hashed here, and the
-- server checks each part against its signed digest. `on_upload(upload_id)`
-- is called once the upload exists. Any failure, raised error or interrupt
-- aborts the upload.
function Client:_multipart_put(a, headers, size)
  local where = a.bucket .. "/" .. a.key
  -- progress = "what": the whole upload (every part) is one wait of
  -- sbot.progress; a function gets (bytes sent, size) as for one PUT
  local report, wait = a.progress, nil
  if type(report) == "string" then
    wait = require("sbot.progress").start(report)
    report = function(sent, total)
      wait:update(math.min(sent / total, 1), string.format("%.1f of %.1f MiB", sent / MiB, total / MiB))
    end
  end
  local _ <close> = wait
  local part_size = effective_part_size(size, a.part_size or self.part_size)
  local pre, whole = nil, nil
  if a.hashes then
    if not a.hashes.parts or not a.hashes.part_size then
      return nil, "s3 put_object " .. where .. ": the hashes of " .. a.file .. " have no part digests " ..
        "(hashed by a client with another multipart_threshold?)", "BadHashes"
    end
    part_size = a.hashes.part_size
    pre, whole = a.hashes.parts, a.hashes.sha256
    if #pre ~= (size + part_size - 1) // part_size then
      return nil, "s3 put_object " .. where .. ": the hashes have " .. #pre .. " part digests for " ..
        (size + part_size - 1) // part_size .. " parts", "BadHashes"
    end
    if a.sha256_metadata then headers["x-amz-meta-sbot-sha256"] = whole end
  end
  local nparts = (size + part_size - 1) // part_size
  local function ranges(first, last) return part_ranges(size, part_size, first, last) end

  local verify_parts = false -- digests known before the upload: each wave is hashed again and compared
  if a.sha256_metadata and not pre then
    local h <close> = crypto.hasher("sha256")
    local job <close> = crypto.sha256_ranges(a.file, ranges(1, nparts), h)
    local digests, herr = job:wait()
    if not digests then return nil, "s3 put_object " .. where .. ": " .. herr, "BadFile" end
    pre = {}
    for n, d in ipairs(digests) do pre[n] = crypto.hex(d) end
    whole = crypto.hex(h:digest())
    headers["x-amz-meta-sbot-sha256"] = whole
    verify_parts = true
  end
  -- hash the waves here unless hash_file gave every digest (then the server checks)
  local hash_waves = not pre or verify_parts
  -- the whole-object digest, fed as the parts are hashed (not when known before)
  local hasher <close> = not pre and crypto.hasher("sha256") or nil

  local upload_id, ierr, icode = self:_initiate(a, headers)
  if not upload_id then return nil, ierr, icode end
  log.debug("s3: multipart upload", { bucket = a.bucket, key = a.key, parts = nparts,
                                       part_size = part_size, upload_id = upload_id })

  local conc = self.concurrency
  local done_bytes = 0
  local parts = {}
  -- the hashing job of the next wave; closed (worker cancelled) on every exit
  local pending <close> = setmetatable({}, { __close = function(t) if t.job then t.job:close() end end })
  local function start_wave(first)
    if first > nparts or not hash_waves then return nil end
    return crypto.sha256_ranges(a.file, ranges(first, math.min(first + conc - 1, nparts)), hasher)
  end
  local pok, result, rerr, rcode = pcall(self._with_upload, self, a, upload_id, function()
    if a.on_upload then a.on_upload(upload_id) end
    pending.job = start_wave(1)
    for first = 1, nparts, conc do
      local digests = {}
      if hash_waves then
        local d, herr = pending.job:wait()
        pending.job:close()
        pending.job = nil
        if not d then return nil, "s3 put_object " .. where .. ": " .. herr, "BadFile" end
        for i, x in ipairs(d) do digests[i] = crypto.hex(x) end
        pending.job = start_wave(first + conc) -- hashed while this wave is sent
      else
        for n = first, math.min(first + conc - 1, nparts) do digests[#digests + 1] = pre[n] end
      end
      local wave, reqs, inflight = {}, {}, {}
      for i, hex in ipairs(digests) do
        local n = first + i - 1
        local off, psize = (n - 1) * part_size, math.min(part_size, size - (n - 1) * part_size)
        if pre and pre[n] ~= hex then
          return nil, "s3 put_object " .. where .. ": " .. a.file ..
            " changed while it was being uploaded (part " .. n .. ")", "FileChanged"
        end
        local p = { number = n, offset = off, size = psize, sha256 = hex }
        parts[n] = p
        wave[i] = p
        reqs[i] = self:_build{ method = "PUT", bucket = a.bucket, key = a.key,
          query = { partNumber = tostring(n), uploadId = upload_id },
          body_file = a.file, body_offset = off, body_length = psize, payload_hash = hex,
          progress = report and function(sent)
            inflight[i] = sent
            local sum = done_bytes
            for _, v in pairs(inflight) do sum = sum + v end
            report(sum, size)
          end or nil }
      end
      local results = http.batch(reqs, { per_host = conc, total = conc })
      for j, res in ipairs(results) do
        local p = wave[j]
        if res.status == nil then
          return nil, string.format("PUT %s part %d: %s", where, p.number, tostring(res.error or res[2])),
            res.code or res[3]
        elseif res.status ~= 200 then
          local _, perr, pcode = s3_error("PUT", where .. " part " .. p.number, res)
          if pcode == "XAmzContentSHA256Mismatch" and not hash_waves then
            return nil, perr .. ": " .. a.file .. " changed since it was hashed", "FileChanged"
          end
          return nil, perr, pcode
        end
        p.etag = unquote(header(res, "etag"))
        if not p.etag then
          return nil, "PUT " .. where .. " part " .. p.number .. ": no ETag in the answer", "BadResponse"
        end
        done_bytes = done_bytes + p.size
      end
    end
    if hasher then whole = crypto.hex(hasher:digest()) end
    local extra = {}
    if a.if_none_match then extra["If-None-Match"] = "*" end
    if a.if_match then extra["If-Match"] = a.if_match end
    local doc, cerr, ccode = self:_complete(a, upload_id, parts, extra)
    if not doc then return nil, cerr, ccode end
    return { etag = unquote(doc.ETag), size = size, sha256 = whole, parts = #parts,
             upload_id = upload_id, version_id = doc._version_id }
  end)
  if not pok then error(result, 0) end
  return result, rerr, rcode
end

--- copy_object{bucket, key, source_bucket, source_key, source_version_id,
---             metadata_directive = "COPY" | "REPLACE", metadata, content_type,
---             if_match, if_none_match}
function Client:copy_object(a)
  key_args("copy_object", a)
  need_string("copy_object", a, "source_key")
  local sbucket = a.source_bucket or a.bucket
  local directive = a.metadata_directive or (a.metadata and "REPLACE" or "COPY")
  if directive ~= "COPY" and directive ~= "REPLACE" then
    argerr("copy_object", "'metadata_directive' must be \"COPY\" or \"REPLACE\"")
  end
  local source = "/" .. sbucket .. "/" .. sigv4.uri_encode(a.source_key, true)
  if a.source_version_id then source = source .. "?versionId=" .. sigv4.uri_encode(a.source_version_id) end
  local head, herr, hcode = self:head_object{ bucket = sbucket, key = a.source_key, version_id = a.source_version_id }
  if not head then return nil, herr, hcode end
  local headers = directive == "REPLACE" and put_headers(a) or {}
  if head.size and head.size > self.copy_threshold then
    if directive == "COPY" then
      -- multipart copy does not carry metadata: copy it explicitly
      headers = put_headers{ content_type = head.content_type, metadata = head.metadata }
    end
    return self:_multipart_copy(a, headers, source, head.size)
  end
  headers["x-amz-copy-source"] = source
  headers["x-amz-metadata-directive"] = directive
  if a.if_none_match then headers["If-None-Match"] = a.if_none_match end
  if a.if_match then headers["If-Match"] = a.if_match end
  local root, doc, res = self:_xml{ method = "PUT", bucket = a.bucket, key = a.key, headers = headers,
                                    root = "CopyObjectResult" }
  if not root then return nil, doc, res end
  return { etag = unquote(doc.ETag), last_modified = doc.LastModified, size = head.size,
           version_id = header(res, "x-amz-version-id") }
end

function Client:_multipart_copy(a, headers, source, size)
  local where = a.bucket .. "/" .. a.key
  local upload_id, ierr, icode = self:_initiate(a, headers)
  if not upload_id then return nil, ierr, icode end
  local part_size = self.copy_part_size
  local parts = {}
  for off = 0, size - 1, part_size do
    parts[#parts + 1] = { number = #parts + 1, first = off, last = math.min(off + part_size, size) - 1 }
  end
  return self:_with_upload(a, upload_id, function()
    for first = 1, #parts, self.concurrency do
      local wave, reqs = {}, {}
      for i = first, math.min(first + self.concurrency - 1, #parts) do
        local p = parts[i]
        wave[#wave + 1] = p
        reqs[#reqs + 1] = self:_build{ method = "PUT", bucket = a.bucket, key = a.key,
          query = { partNumber = tostring(p.number), uploadId = upload_id },
          headers = { ["x-amz-copy-source"] = source,
                      ["x-amz-copy-source-range"] = "bytes=" .. p.first .. "-" .. p.last } }
      end
      local results = http.batch(reqs, { per_host = self.concurrency, total = self.concurrency })
      for j, res in ipairs(results) do
        local p = wave[j]
        if res.status == nil then
          return nil, string.format("PUT %s copy part %d: %s", where, p.number, tostring(res.error or res[2])),
            res.code or res[3]
        end
        if res.status ~= 200 then return s3_error("PUT", where .. " copy part " .. p.number, res) end
        local root, doc = s3xml.parse(res.body or "")
        if root == "Error" then
          return nil, string.format("%s: %s (PUT %s copy part %d)", doc.Code, doc.Message, where, p.number), doc.Code
        end
        p.etag = root and unquote(doc.ETag)
        if not p.etag then return nil, "PUT " .. where .. " copy part " .. p.number .. ": no ETag", "BadResponse" end
      end
    end
    local doc, cerr, ccode = self:_complete(a, upload_id, parts)
    if not doc then return nil, cerr, ccode end
    return { etag = unquote(doc.ETag), size = size, parts = #parts, version_id = doc._version_id }
  end)
end

function Client:delete_object(a)
  key_args("delete_object", a)
  local q = a.version_id and { versionId = a.version_id } or nil
  local res, err, code = self:_call{ method = "DELETE", bucket = a.bucket, key = a.key, query = q }
  if not res then return nil, err, code end
  return { version_id = header(res, "x-amz-version-id"),
           delete_marker = header(res, "x-amz-delete-marker") == "true" }
end

--- delete_objects{bucket, objects = {"key" | {key, version_id}, ...}, quiet}
-- Sent in batches of 1000. -> {deleted = {{key, version_id}}, errors = {{key, code, message}}}
function Client:delete_objects(a)
  check_table("delete_objects", a)
  need_string("delete_objects", a, "bucket")
  if type(a.objects) ~= "table" then argerr("delete_objects", "'objects' must be a list") end
  local out = { deleted = {}, errors = {} }
  local list = {}
  for i, o in ipairs(a.objects) do
    if type(o) == "string" then list[i] = { key = o }
    elseif type(o) == "table" and type(o.key or o[1]) == "string" then
      list[i] = { key = o.key or o[1], version_id = o.version_id or o[2] }
    else argerr("delete_objects", "objects[" .. i .. "] must be a key or {key, version_id}") end
  end
  for first = 1, #list, 1000 do
    local b = { '<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' }
    if a.quiet then b[#b + 1] = "<Quiet>true</Quiet>" end
    for i = first, math.min(first + 999, #list) do
      local o = list[i]
      b[#b + 1] = "<Object><Key>" .. esc(o.key) .. "</Key>" ..
        (o.version_id and ("<VersionId>" .. esc(o.version_id) .. "</VersionId>") or "") .. "</Object>"
    end
    b[#b + 1] = "</Delete>"
    local body = table.concat(b)
    local root, doc, code = self:_xml{ method = "POST", bucket = a.bucket, query = { delete = "" },
      body = body, headers = xml_body(body), root = "DeleteResult" }
    if not root then return nil, doc, code end
    for _, d in ipairs(tolist(doc.Deleted)) do
      out.deleted[#out.deleted + 1] = { key = d.Key, version_id = d.VersionId,
        delete_marker = d.DeleteMarker == "true" }
    end
    for _, e in ipairs(tolist(doc.Error)) do
      out.errors[#out.errors + 1] = { key = e.Key, version_id = e.VersionId, code = e.Code, message = e.Message }
    end
  end
  return out
end

--- object_url{bucket, key} -> the object's plain (unsigned) URL, as an
-- anonymous reader fetches a public object (path or virtual-host style, as
-- this client addresses it).
function Client:object_url(a)
  key_args("object_url", a)
  local host, path = self:_target(a.bucket, a.key)
  return self.ep.scheme .. "://" .. host .. sigv4.uri_encode(path, true)
end

--- presign{bucket, key, method = "GET", expires = 3600} -> URL
function Client:presign(a)
  key_args("presign", a)
  local host, path = self:_target(a.bucket, a.key)
  local access, secret, token = self._creds()
  local p = sigv4.presign{ method = a.method or "GET", path = path, host = host,
    query = a.query, expires = a.expires or 3600, access_key = access, secret_key = secret,
    session_token = token, region = self.region, service = "s3" }
  return self.ep.scheme .. "://" .. host .. p.uri
end

M.Client = Client
return M
