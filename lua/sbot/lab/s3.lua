--- sbot.lab.s3: an S3 server model for `sbot lab` (docs/lab.md, "The S3 model").
--
-- Path-style buckets and keys on sbot.httpd; every request is checked with
-- SigV4 (header or presigned query, via sbot.sigv4); an unsigned request is
-- anonymous and is judged by the bucket policy. Bucket and object state
-- (versions, delete markers, metadata, policies, lifecycle rules, multipart
-- uploads) lives in plain Lua tables (`dev.st`); object and part bytes live in
-- files under `<lab dir>/s3-data`, written once and never changed, and GETs
-- stream them from there (httpd's options.file), so no object sits in memory.
--
--   local dev = assert(require("sbot.lab.s3").new{ dir = "/tmp/lab", name = "s3",
--     injector = faults.injector{ kind = "s3", name = "s3" } })
--   -- dev.handler(req) -> status, headers, body
local crypto = require "sbot.crypto"
local fsio = require "sbot.fsio"
local sigv4 = require "sbot.sigv4"
local s3xml = require "sbot.s3xml"
local json = require "sbot.json"

local M = {}

M.REGION = "us-east-1"
M.BUCKET = "sbot"
M.PUBLIC_BUCKET = "sbot-public"
M.PUBLIC_PREFIX = "published/"
M.MAX_BODY = 64 * 1024 * 1024
M.MIN_PART = 5 * 1024 * 1024
M.MAX_SKEW = 15 * 60

local NS = "http://s3.amazonaws.com/doc/2006-03-01/"
local EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

-- ---- small helpers -------------------------------------------------------------

local S3Error = {}
S3Error.__index = S3Error
-- extra: more elements of the <Error> document, in order ({{"Key", k}, ...})
local function fail(status, code, message, extra)
  error(setmetatable({ status = status, code = code, message = message, extra = extra }, S3Error), 0)
end

local esc = s3xml.escape
local function el(name, value) return "<" .. name .. ">" .. esc(tostring(value)) .. "</" .. name .. ">" end
local function xml_doc(root, inner)
  return '<?xml version="1.0" encoding="UTF-8"?>\n<' .. root .. ' xmlns="' .. NS .. '">' .. inner ..
    "</" .. root .. ">"
end
local XML = { ["Content-Type"] = "application/xml" }

local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

--- "20261126T120000Z" -> epoch seconds, or nil.
local function parse_amz_date(s)
  local y, mo, d, h, mi, se = tostring(s):match("^(%d%d%d%d)(%d%d)(%d%d)T(%d%d)(%d%d)(%d%d)Z$")
  if not y then return nil end
  return days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400 + tonumber(h) * 3600 +
    tonumber(mi) * 60 + tonumber(se)
end

local function iso_ms(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. string.format(".%03dZ", ms % 1000)
end
local function http_date(ms) return os.date("!%a, %d %b %Y %H:%M:%S GMT", ms // 1000) end

local function write_file(path, data)
  local f, err = io.open(path, "wb")
  if not f then fail(500, "InternalError", "lab s3: cannot write " .. path .. ": " .. tostring(err)) end
  f:write(data)
  f:close()
end

--- Copy `length` bytes of src from `offset` into the new file dst, 1 MiB at
-- a time; returns the hex MD5 of the bytes copied.
local function copy_range(src, offset, length, dst)
  local i, ierr = io.open(src, "rb")
  if not i then fail(500, "InternalError", "lab s3: cannot read " .. src .. ": " .. tostring(ierr)) end
  local o, oerr = io.open(dst, "wb")
  if not o then
    i:close()
    fail(500, "InternalError", "lab s3: cannot write " .. dst .. ": " .. tostring(oerr))
  end
  local md5 = crypto.hasher("md5")
  i:seek("set", offset)
  local left = length
  while left > 0 do
    local chunk = i:read(math.min(left, 1024 * 1024))
    if not chunk then break end
    o:write(chunk)
    md5:update(chunk)
    left = left - #chunk
  end
  i:close()
  o:close()
  if left > 0 then fail(500, "InternalError", "lab s3: " .. src .. " ended " .. left .. " bytes early") end
  return crypto.hex(md5:digest())
end

--- Remove a directory tree (the lab's own data directory) with sbot.fsio;
-- links are removed, never followed. true, or nil and the first error.
local function remove_tree(path)
  local st = fsio.stat(path)
  if not st then return true end
  if st.type == "directory" then
    local entries, err = fsio.list(path)
    if not entries then return nil, err end
    for _, e in ipairs(entries) do
      local ok, rerr = remove_tree(path .. "/" .. e.name)
      if not ok then return nil, rerr end
    end
  end
  return fsio.remove(path)
end
M.remove_tree = remove_tree
local function random_id(n) return crypto.hex(crypto.random_bytes(n)) end

-- Glob match for policy resources ("*" any run, "?" one character).
local function glob(pattern, s)
  local lp = "^" .. pattern:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
  return s:match(lp) ~= nil
end

local function as_list(v)
  if v == nil then return {} end
  if type(v) == "table" and v[1] ~= nil then return v end
  if type(v) == "table" and next(v) == nil then return {} end
  return { v }
end

local function principal_is_anyone(p)
  if p == "*" then return true end
  if type(p) == "table" and p.AWS ~= nil then
    for _, a in ipairs(as_list(p.AWS)) do if a == "*" then return true end end
  end
  return false
end

--- Whether the policy (a decoded JSON document) lets anyone do `action` on
-- `resource`. A matching Deny wins over any Allow.
function M.policy_allows_anonymous(policy, action, resource)
  local allowed = false
  for _, st in ipairs(as_list(policy.Statement)) do
    if type(st) == "table" and principal_is_anyone(st.Principal) then
      local act = false
      for _, a in ipairs(as_list(st.Action)) do
        if type(a) == "string" and glob(a, action) then act = true end
      end
      local res = false
      for _, r in ipairs(as_list(st.Resource)) do
        if type(r) == "string" and glob(r, resource) then res = true end
      end
      if act and res then
        if st.Effect == "Deny" then return false end
        if st.Effect == "Allow" then allowed = true end
      end
    end
  end
  return allowed
end

-- Check a policy document when it is put: JSON with a Statement list whose
-- entries have Effect, Principal, Action and Resource.
local function validate_policy(text)
  local doc = json.decode(text)
  if type(doc) ~= "table" then fail(400, "MalformedPolicy", "Policies must be valid JSON and the first byte must be '{'") end
  local sts = as_list(doc.Statement)
  if #sts == 0 then fail(400, "MalformedPolicy", "Missing required field Statement") end
  for i, st in ipairs(sts) do
    if type(st) ~= "table" then fail(400, "MalformedPolicy", "Statement " .. i .. " is not an object") end
    if st.Effect ~= "Allow" and st.Effect ~= "Deny" then
      fail(400, "MalformedPolicy", "Statement " .. i .. ": Effect must be Allow or Deny")
    end
    for _, f in ipairs { "Principal", "Action", "Resource" } do
      if st[f] == nil then fail(400, "MalformedPolicy", "Statement " .. i .. ": missing required field " .. f) end
    end
    -- refused rather than silently ignored: an Allow whose Condition the lab
    -- skipped would open more than the policy says
    for _, f in ipairs { "Condition", "NotPrincipal", "NotAction", "NotResource" } do
      if st[f] ~= nil then
        fail(501, "NotImplemented", "the lab S3 model does not evaluate '" .. f .. "' in bucket policies (Statement " .. i .. ")")
      end
    end
  end
  return doc
end

--- S3's bucket naming rules (general purpose buckets): true, or nil and the
-- rule broken.
function M.check_bucket_name(name)
  if #name < 3 or #name > 63 then return nil, "The bucket name must be between 3 and 63 characters." end
  if not name:match("^[a-z0-9][a-z0-9%.%-]*[a-z0-9]$") then
    return nil, "Bucket names can contain lowercase letters, numbers, periods and hyphens, and must begin and end with a letter or number."
  end
  if name:find("..", 1, true) then return nil, "Bucket names must not contain two adjacent periods." end
  if name:match("^%d+%.%d+%.%d+%.%d+$") then return nil, "Bucket names must not be formatted as an IP address." end
  for _, p in ipairs { "xn--", "sthree-", "amzn-s3-demo-" } do
    if name:sub(1, #p) == p then return nil, "Bucket names must not start with the prefix '" .. p .. "'." end
  end
  for _, suffix in ipairs { "-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3" } do
    if name:sub(-#suffix) == suffix then return nil, "Bucket names must not end with the suffix '" .. suffix .. "'." end
  end
  return true
end

-- ---- the device ---------------------------------------------------------------------

--- Create the S3 device. ctx: the lab's device context (docs/lab.md), plus
-- optional `access_key`, `secret_key`, `region`, `bucket`, `public_bucket`.
function M.new(ctx)
  local dir = (ctx.dir or ".") .. "/s3-data"
  local cleared, cerr = remove_tree(dir)
  if not cleared then return nil, "cannot clear " .. dir .. ": " .. tostring(cerr) end
  local made, merr = fsio.mkdirs(dir)
  if not made then return nil, "cannot create " .. dir .. ": " .. tostring(merr) end
  local access_key = ctx.access_key or ("LAB" .. random_id(8):upper():sub(1, 17))
  local secret_key = ctx.secret_key or crypto.base64_encode(crypto.random_bytes(30))
  local region = ctx.region or M.REGION
  local clock_ms = 0
  local file_seq = 0
  -- data files are immutable once written, so a server-side copy shares the
  -- source's file: refs[path] counts the versions using it
  local refs = {}
  local st = { buckets = {}, uploads = {}, requests = 0, writes = 0, denied = 0 }

  local dev = { name = ctx.name or "s3", kind = "s3", st = st, faults = ctx.injector, dir = dir,
    max_body = M.MAX_BODY, access_key = access_key, region = region }

  -- strictly increasing wall-clock milliseconds (versions order by them)
  local function now_ms()
    local t = os.time() * 1000
    clock_ms = math.max(clock_ms + 1, t)
    return clock_ms
  end

  local function new_file()
    file_seq = file_seq + 1
    local path = dir .. "/" .. string.format("%08d", file_seq)
    refs[path] = 1
    return path
  end

  local function share(path)
    refs[path] = (refs[path] or 0) + 1
    return path
  end

  local function release(path)
    if not path then return end
    local n = (refs[path] or 1) - 1
    if n > 0 then refs[path] = n; return end
    refs[path] = nil
    os.remove(path)
  end

  local function drop(obj)
    if obj and obj.file then release(obj.file) end
  end

  local function create_bucket(name)
    if st.buckets[name] then return false end
    st.buckets[name] = { name = name, created = now_ms(), versioning = nil, policy = nil, lifecycle = nil,
      objects = {} }
    return true
  end

  -- ---- authentication ---------------------------------------------------------

  local PRESIGN_KEYS = { ["X-Amz-Algorithm"] = true, ["X-Amz-Credential"] = true, ["X-Amz-Date"] = true,
    ["X-Amz-Expires"] = true, ["X-Amz-SignedHeaders"] = true, ["X-Amz-Signature"] = true,
    ["X-Amz-Security-Token"] = true }

  local function url_decode(s)
    return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
  end

  -- the raw query without the presign parameters, as sent
  local function strip_presign(raw)
    local keep = {}
    for part in raw:gmatch("[^&]+") do
      local name = url_decode(part:match("^([^=]*)"))
      if not PRESIGN_KEYS[name] then keep[#keep + 1] = part end
    end
    return table.concat(keep, "&")
  end

  local function check_scope(cred)
    local ak, date, reg, service, term = cred:match("^([^/]+)/(%d%d%d%d%d%d%d%d)/([^/]+)/([^/]+)/([^/]+)$")
    if not ak then fail(400, "AuthorizationHeaderMalformed", "the Credential '" .. cred .. "' is malformed") end
    if ak ~= access_key then
      fail(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    end
    if reg ~= region then
      fail(400, "AuthorizationHeaderMalformed", "the region '" .. reg .. "' is wrong; expecting '" .. region .. "'")
    end
    if service ~= "s3" or term ~= "aws4_request" then
      fail(400, "AuthorizationHeaderMalformed", "the Credential scope must be <date>/" .. region .. "/s3/aws4_request")
    end
    return date
  end

  local function signed_header_list(req, names)
    local list = {}
    for name in names:gmatch("[^;]+") do
      local v = req.headers[name]
      if v == nil then
        fail(403, "SignatureDoesNotMatch", "The signed header '" .. name .. "' is not in the request.")
      end
      list[#list + 1] = { name, v }
    end
    return list
  end

  -- S3 refuses a request carrying an x-amz-* header the signature does not
  -- cover (someone could have added it on the way); x-amz-content-sha256
  -- alone may go unsigned. A client that adds a header after signing fails here.
  local function check_all_signed(req, names)
    local signed, missing = {}, {}
    for name in names:gmatch("[^;]+") do signed[name:lower()] = true end
    for name in pairs(req.headers) do
      local n = tostring(name):lower()
      if n:sub(1, 6) == "x-amz-" and n ~= "x-amz-content-sha256" and not signed[n] then
        missing[#missing + 1] = n
      end
    end
    if #missing > 0 then
      table.sort(missing)
      fail(403, "AccessDenied", "There were headers present in the request which were not signed: "
        .. table.concat(missing, ", "))
    end
  end

  local function mismatch()
    fail(403, "SignatureDoesNotMatch",
      "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
  end

  -- Returns true for a signed request, false for an anonymous one; raises on a bad signature.
  local function authenticate(req)
    local q = req.query
    local auth = req.headers["authorization"]
    if q["X-Amz-Signature"] then
      if q["X-Amz-Algorithm"] ~= "AWS4-HMAC-SHA256" then
        fail(400, "AuthorizationQueryParametersError", "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
      end
      local cred, names, amz_date = q["X-Amz-Credential"] or "", q["X-Amz-SignedHeaders"] or "", q["X-Amz-Date"]
      local date = check_scope(cred)
      local t = parse_amz_date(amz_date)
      local expires = tonumber(q["X-Amz-Expires"] or "")
      if not t or not expires or expires < 1 or expires > 604800 or amz_date:sub(1, 8) ~= date then
        fail(400, "AuthorizationQueryParametersError", "X-Amz-Date, X-Amz-Expires or the credential date are malformed")
      end
      if os.time() > t + expires then fail(403, "AccessDenied", "Request has expired") end
      local hdrs = {}
      for _, h in ipairs(signed_header_list(req, names)) do
        if h[1] ~= "host" then hdrs[#hdrs + 1] = h end
      end
      local p = sigv4.presign{ method = req.method, path = req.path, query = strip_presign(req.raw_query or ""),
        host = req.headers["host"], headers = hdrs, expires = math.tointeger(expires), time = amz_date,
        access_key = access_key, secret_key = secret_key, session_token = q["X-Amz-Security-Token"],
        region = region, service = "s3" }
      local want = p.uri:match("X%-Amz%-Signature=(%x+)")
      if want ~= q["X-Amz-Signature"] then mismatch() end
      check_all_signed(req, names)
      return true
    end
    if auth == nil then return false end
    local cred, names, given = auth:match(
      "^AWS4%-HMAC%-SHA256%s+Credential=([^,%s]+),%s*SignedHeaders=([^,%s]+),%s*Signature=(%x+)%s*$")
    if not cred then
      fail(400, "AuthorizationHeaderMalformed", "The authorization header is malformed (expected AWS4-HMAC-SHA256).")
    end
    local date = check_scope(cred)
    local amz_date = req.headers["x-amz-date"]
    local t = parse_amz_date(amz_date)
    if not t or amz_date:sub(1, 8) ~= date then
      fail(403, "AccessDenied", "AWS authentication requires a valid x-amz-date matching the credential scope")
    end
    if math.abs(os.time() - t) > M.MAX_SKEW then
      fail(403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
    end
    local payload = req.headers["x-amz-content-sha256"]
    if not payload then fail(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256") end
    if payload:match("^STREAMING%-") then
      fail(501, "NotImplemented", "the lab S3 model does not implement aws-chunked (" .. payload .. ") uploads")
    end
    if payload ~= "UNSIGNED-PAYLOAD" and not payload:match("^%x+$") then
      fail(400, "InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a SHA-256 in hex")
    end
    local s = sigv4.sign{ method = req.method, path = req.path, query = req.raw_query or "",
      headers = signed_header_list(req, names), payload_hash = payload, time = amz_date,
      access_key = access_key, secret_key = secret_key, region = region, service = "s3" }
    if s.signed_headers ~= names or s.signature ~= given then mismatch() end
    check_all_signed(req, names)
    if payload ~= "UNSIGNED-PAYLOAD" then
      local got = #req.body == 0 and EMPTY_SHA256 or crypto.hex(crypto.sha256(req.body))
      if got ~= payload:lower() then
        fail(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
      end
    end
    return true
  end

  -- ---- object helpers ---------------------------------------------------------

  local function bucket_of(name)
    local b = st.buckets[name]
    if not b then fail(404, "NoSuchBucket", "The specified bucket does not exist", { { "BucketName", name } }) end
    return b
  end

  local function current(b, key)
    local vs = b.objects[key]
    return vs and vs[#vs] or nil
  end

  local function live(obj) return obj ~= nil and not obj.delete_marker end

  local function new_version(b, key, obj)
    local vs = b.objects[key]
    if not vs then
      vs = {}
      b.objects[key] = vs
    end
    if b.versioning == "Enabled" then
      obj.version_id = random_id(16)
    else
      obj.version_id = "null"
      for i = #vs, 1, -1 do
        if vs[i].version_id == "null" then
          drop(vs[i])
          table.remove(vs, i)
        end
      end
    end
    obj.modified = obj.modified or now_ms()
    vs[#vs + 1] = obj
    return obj
  end

  local function find(b, key, version_id)
    local vs = b.objects[key] or {}
    if version_id then
      for _, v in ipairs(vs) do
        if v.version_id == version_id then return v end
      end
      if version_id ~= "null" and not version_id:match("^%x+$") then
        fail(400, "InvalidArgument", "Invalid version id specified",
          { { "ArgumentName", "versionId" }, { "ArgumentValue", version_id } })
      end
      fail(404, "NoSuchVersion", "The specified version does not exist.", { { "Key", key }, { "VersionId", version_id } })
    end
    local cur = vs[#vs]
    if not live(cur) then fail(404, "NoSuchKey", "The specified key does not exist.", { { "Key", key } }) end
    return cur
  end

  local function precondition(which)
    fail(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
      { { "Condition", which } })
  end

  local function check_conditions(req, key, cur)
    local inm, im = req.headers["if-none-match"], req.headers["if-match"]
    if inm ~= nil and inm ~= "*" then
      fail(501, "NotImplemented", "If-None-Match on a write only supports '*'")
    end
    if inm == "*" and live(cur) then precondition("If-None-Match") end
    if im ~= nil then
      if not live(cur) then fail(404, "NoSuchKey", "The specified key does not exist.", { { "Key", key } }) end
      if im ~= "*" and im:gsub('"', "") ~= cur.etag then precondition("If-Match") end
    end
  end

  local function user_meta(req)
    local m = {}
    for k, v in pairs(req.headers) do
      local name = k:match("^x%-amz%-meta%-(.+)$")
      if name then m[name] = v end
    end
    return m
  end

  -- Content-MD5: the base64 of 16 bytes, else InvalidDigest; then it must
  -- match the body, else BadDigest (what S3 answers in that order)
  local function check_md5(req, required)
    local want = req.headers["content-md5"]
    if want == nil then
      if required then fail(400, "InvalidRequest", "Missing required header for this request: Content-MD5") end
      return
    end
    local raw = want:match("^[%w+/]+=*$") and crypto.base64_decode(want)
    if not raw or #raw ~= 16 then
      fail(400, "InvalidDigest", "The Content-MD5 you specified was invalid.", { { "Content-MD5", want } })
    end
    local got = crypto.md5(req.body)
    if raw ~= got then
      fail(400, "BadDigest", "The Content-MD5 you specified did not match what we received.",
        { { "ExpectedDigest", crypto.hex(raw) }, { "CalculatedDigest", crypto.base64_encode(got) } })
    end
  end

  local function object_headers(obj)
    local h = { ETag = '"' .. obj.etag .. '"', ["Content-Type"] = obj.content_type,
      ["Last-Modified"] = http_date(obj.modified), ["Accept-Ranges"] = "bytes" }
    if obj.version_id ~= "null" or obj.versioned then h["x-amz-version-id"] = obj.version_id end
    for k, v in pairs(obj.meta) do h["x-amz-meta-" .. k] = v end
    return h
  end

  -- ---- buckets ----------------------------------------------------------------

  local function list_buckets()
    local names = {}
    for n in pairs(st.buckets) do names[#names + 1] = n end
    table.sort(names)
    local out = {}
    for _, n in ipairs(names) do
      out[#out + 1] = "<Bucket>" .. el("Name", n) .. el("CreationDate", iso_ms(st.buckets[n].created)) .. "</Bucket>"
    end
    return 200, XML, xml_doc("ListAllMyBucketsResult", "<Owner><ID>sbot-lab</ID><DisplayName>lab</DisplayName></Owner>" ..
      "<Buckets>" .. table.concat(out) .. "</Buckets>")
  end

  local function sorted_keys(b, prefix)
    local keys = {}
    for k, vs in pairs(b.objects) do
      if #vs > 0 and k:sub(1, #prefix) == prefix then keys[#keys + 1] = k end
    end
    table.sort(keys)
    return keys
  end

  local function max_keys_of(q)
    local n = math.tointeger(tonumber(q["max-keys"] or "1000"))
    if not n or n < 0 then fail(400, "InvalidArgument", "max-keys must be a non-negative integer") end
    return math.min(n, 1000)
  end

  local function list_objects(b, q)
    local v2 = q["list-type"] == "2"
    if q["list-type"] and not v2 then fail(400, "InvalidArgument", "list-type must be 2") end
    local prefix, delim = q.prefix or "", q.delimiter or ""
    local max_keys = max_keys_of(q)
    local start
    if v2 then
      if q["continuation-token"] then
        start = crypto.base64_decode(q["continuation-token"])
        if not start then fail(400, "InvalidArgument", "The continuation token provided is incorrect") end
      else
        start = q["start-after"] or ""
      end
    else
      start = q.marker or ""
    end
    local contents, prefixes, seen, count, last, truncated = {}, {}, {}, 0, nil, false
    for _, k in ipairs(sorted_keys(b, prefix)) do
      local obj = current(b, k)
      if live(obj) and k > start and not (delim ~= "" and start:sub(-#delim) == delim and k:sub(1, #start) == start) then
        local p
        if delim ~= "" then
          local i = k:find(delim, #prefix + 1, true)
          if i then p = k:sub(1, i + #delim - 1) end
        end
        if not (p and seen[p]) then
          if count == max_keys then
            -- max-keys=0 asks for nothing: an empty page, not truncated (as S3)
            truncated = max_keys > 0
            break
          end
          count = count + 1
          if p then
            seen[p] = true
            prefixes[#prefixes + 1] = "<CommonPrefixes>" .. el("Prefix", p) .. "</CommonPrefixes>"
            last = p -- a token ending in the delimiter skips that whole prefix
          else
            contents[#contents + 1] = "<Contents>" .. el("Key", k) .. el("LastModified", iso_ms(obj.modified)) ..
              el("ETag", '"' .. obj.etag .. '"') .. el("Size", obj.size) ..
              "<StorageClass>STANDARD</StorageClass></Contents>"
            last = k
          end
        end
      end
    end
    local inner = el("Name", b.name) .. el("Prefix", prefix) ..
      (delim ~= "" and el("Delimiter", delim) or "") .. el("MaxKeys", max_keys) ..
      el("IsTruncated", truncated and "true" or "false")
    if v2 then
      inner = inner .. el("KeyCount", count)
      if q["start-after"] then inner = inner .. el("StartAfter", q["start-after"]) end
      if q["continuation-token"] then inner = inner .. el("ContinuationToken", q["continuation-token"]) end
      if truncated then inner = inner .. el("NextContinuationToken", crypto.base64_encode(last)) end
    else
      inner = inner .. el("Marker", start)
      if truncated then inner = inner .. el("NextMarker", last) end
    end
    return 200, XML, xml_doc("ListBucketResult", inner .. table.concat(contents) .. table.concat(prefixes))
  end

  local function list_versions(b, q)
    local prefix = q.prefix or ""
    local max_keys = max_keys_of(q)
    local entries = {}
    for _, k in ipairs(sorted_keys(b, prefix)) do
      local vs = b.objects[k]
      for i = #vs, 1, -1 do entries[#entries + 1] = { k, vs[i], i == #vs } end
    end
    local km, vm = q["key-marker"], q["version-id-marker"]
    local first = 1
    if km and km ~= "" then
      first = #entries + 1
      for i, e in ipairs(entries) do
        if (vm and vm ~= "" and e[1] == km and e[2].version_id == vm) then first = i + 1; break end
        if (not vm or vm == "") and e[1] > km then first = i; break end
      end
    end
    local out, n = {}, 0
    local truncated = max_keys > 0 and #entries - first + 1 > max_keys
    local last
    for i = first, math.min(#entries, first + max_keys - 1) do
      local k, v, latest = entries[i][1], entries[i][2], entries[i][3]
      local common = el("Key", k) .. el("VersionId", v.version_id) .. el("IsLatest", latest and "true" or "false") ..
        el("LastModified", iso_ms(v.modified))
      if v.delete_marker then
        out[#out + 1] = "<DeleteMarker>" .. common .. "</DeleteMarker>"
      else
        out[#out + 1] = "<Version>" .. common .. el("ETag", '"' .. v.etag .. '"') .. el("Size", v.size) ..
          "<StorageClass>STANDARD</StorageClass></Version>"
      end
      n = n + 1
      last = entries[i]
    end
    local inner = el("Name", b.name) .. el("Prefix", prefix) .. el("KeyMarker", km or "") ..
      el("VersionIdMarker", vm or "") .. el("MaxKeys", max_keys) .. el("IsTruncated", truncated and "true" or "false")
    if truncated and last then
      inner = inner .. el("NextKeyMarker", last[1]) .. el("NextVersionIdMarker", last[2].version_id)
    end
    return 200, XML, xml_doc("ListVersionsResult", inner .. table.concat(out))
  end

  local function list_uploads(bname, q)
    local prefix = q.prefix or ""
    local list = {}
    for id, u in pairs(st.uploads) do
      if u.bucket == bname and u.key:sub(1, #prefix) == prefix then list[#list + 1] = { id = id, u = u } end
    end
    table.sort(list, function(a, b)
      if a.u.key ~= b.u.key then return a.u.key < b.u.key end
      return a.u.initiated < b.u.initiated
    end)
    local out = {}
    for _, e in ipairs(list) do
      out[#out + 1] = "<Upload>" .. el("Key", e.u.key) .. el("UploadId", e.id) ..
        el("Initiated", iso_ms(e.u.initiated)) .. "<StorageClass>STANDARD</StorageClass></Upload>"
    end
    return 200, XML, xml_doc("ListMultipartUploadsResult", el("Bucket", bname) .. el("Prefix", prefix) ..
      el("MaxUploads", 1000) .. el("IsTruncated", "false") .. table.concat(out))
  end

  local function delete_version_or_key(b, key, version_id)
    local vs = b.objects[key]
    if version_id then
      local was_marker = false
      if vs then
        for i = #vs, 1, -1 do
          if vs[i].version_id == version_id then
            was_marker = vs[i].delete_marker
            drop(vs[i])
            table.remove(vs, i)
          end
        end
        if #vs == 0 then b.objects[key] = nil end
      end
      return { key = key, version_id = version_id, marker = was_marker }
    end
    if b.versioning then
      local m = new_version(b, key, { delete_marker = true, etag = "", size = 0, meta = {},
        versioned = true })
      return { key = key, marker = true, marker_version = m.version_id }
    end
    if vs then for _, v in ipairs(vs) do drop(v) end end
    b.objects[key] = nil
    return { key = key }
  end

  local function delete_many(b, req)
    check_md5(req, true)
    local root, doc = s3xml.parse(req.body, { "Object" })
    if root ~= "Delete" or type(doc) ~= "table" then
      fail(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema")
    end
    local objects = doc.Object or {}
    if #objects > 1000 then fail(400, "MalformedXML", "at most 1000 objects per DeleteObjects request") end
    local quiet = doc.Quiet == "true"
    local out = {}
    for _, o in ipairs(objects) do
      if type(o) ~= "table" or type(o.Key) ~= "string" then
        fail(400, "MalformedXML", "every <Object> needs a <Key>")
      end
      local vid = o.VersionId
      if vid == "" then vid = nil end
      local arn = "arn:aws:s3:::" .. b.name .. "/" .. o.Key
      if req.anonymous and not M.policy_allows_anonymous(b.policy and b.policy.doc or {},
          vid and "s3:DeleteObjectVersion" or "s3:DeleteObject", arn) then
        st.denied = st.denied + 1
        out[#out + 1] = "<Error>" .. el("Key", o.Key) .. (vid and el("VersionId", vid) or "") ..
          el("Code", "AccessDenied") .. el("Message", "Access Denied") .. "</Error>"
      else
        local r = delete_version_or_key(b, o.Key, vid)
        if not quiet then
          local inner = el("Key", o.Key)
          if vid then inner = inner .. el("VersionId", vid) end
          if r.marker then inner = inner .. el("DeleteMarker", "true") end
          if r.marker_version then inner = inner .. el("DeleteMarkerVersionId", r.marker_version) end
          out[#out + 1] = "<Deleted>" .. inner .. "</Deleted>"
        end
      end
    end
    return 200, XML, xml_doc("DeleteResult", table.concat(out))
  end

  -- CreateBucket: S3's naming rules; the location constraint must name this
  -- endpoint's region (none for us-east-1). Creating a bucket you already own
  -- is 200 in us-east-1 (S3's legacy behaviour there) and 409
  -- BucketAlreadyOwnedByYou in every other region.
  local function put_bucket(req, bname)
    local ok, why = M.check_bucket_name(bname)
    if not ok then fail(400, "InvalidBucketName", "The specified bucket is not valid. " .. why, { { "BucketName", bname } }) end
    local constraint = ""
    if req.body ~= "" then
      local root, doc = s3xml.parse(req.body)
      if root ~= "CreateBucketConfiguration" then
        fail(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema")
      end
      constraint = type(doc) == "table" and type(doc.LocationConstraint) == "string" and doc.LocationConstraint or ""
    end
    local want = region == "us-east-1" and "" or region
    if constraint ~= want then
      if constraint == "" then
        fail(400, "IllegalLocationConstraintException",
          "The unspecified location constraint is incompatible for the region specific endpoint this request was sent to.")
      end
      fail(400, region == "us-east-1" and "InvalidLocationConstraint" or "IllegalLocationConstraintException",
        "The " .. constraint .. " location constraint is incompatible for the region specific endpoint this request was sent to.")
    end
    if not create_bucket(bname) and region ~= "us-east-1" then
      fail(409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it.",
        { { "BucketName", bname } })
    end
    return 200, { Location = "/" .. bname }, ""
  end

  -- Lifecycle rules are validated and kept (GET returns them as put); the
  -- lab does not run them: their time scale is days.
  local function put_lifecycle(req, b)
    check_md5(req, true)
    local root, doc = s3xml.parse(req.body, { "Rule" })
    if root ~= "LifecycleConfiguration" or type(doc) ~= "table" then
      fail(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema")
    end
    local rules = doc.Rule or {}
    if #rules == 0 or #rules > 1000 then
      fail(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema")
    end
    local ids = {}
    for i, r in ipairs(rules) do
      local function bad(msg) fail(400, "InvalidArgument", "Rule " .. i .. ": " .. msg) end
      if type(r) ~= "table" then bad("not an element") end
      if r.Status ~= "Enabled" and r.Status ~= "Disabled" then bad("Status must be Enabled or Disabled") end
      if r.ID ~= nil then
        if type(r.ID) ~= "string" or #r.ID > 255 then bad("ID must be at most 255 characters") end
        if ids[r.ID] then bad("RuleId must be unique. Found same ID for more than one rule") end
        ids[r.ID] = true
      end
      if r.Filter == nil and r.Prefix == nil then bad("a Filter (or Prefix) is required") end
      local actions = 0
      local function days(parent, field)
        local t = r[parent]
        if t == nil then return end
        local v = type(t) == "table" and math.tointeger(tonumber(t[field] or "")) or nil
        if not v or v < 1 then bad("'" .. field .. "' for '" .. parent .. "' must be a positive integer") end
        actions = actions + 1
      end
      days("NoncurrentVersionExpiration", "NoncurrentDays")
      days("AbortIncompleteMultipartUpload", "DaysAfterInitiation")
      if r.Expiration ~= nil then actions = actions + 1 end
      if r.Transition ~= nil or r.NoncurrentVersionTransition ~= nil then actions = actions + 1 end
      if actions == 0 then bad("At least one action needs to be specified in a rule") end
    end
    b.lifecycle = req.body:gsub("^%s*<%?xml[^>]*%?>%s*", "")
    return 200, {}, ""
  end

  local function bucket_request(req, bname)
    local m, q = req.method, req.query
    if m == "PUT" and next(q) == nil then return put_bucket(req, bname) end
    local b = bucket_of(bname)
    if m == "HEAD" and next(q) == nil then return 200, { ["x-amz-bucket-region"] = region }, "" end
    if m == "DELETE" and next(q) == nil then
      if next(b.objects) ~= nil then
        fail(409, "BucketNotEmpty", "The bucket you tried to delete is not empty", { { "BucketName", bname } })
      end
      for _, u in pairs(st.uploads) do
        if u.bucket == bname then
          fail(409, "BucketNotEmpty", "The bucket you tried to delete has multipart uploads in progress", { { "BucketName", bname } })
        end
      end
      st.buckets[bname] = nil
      return 204, {}, ""
    end
    if q.versioning then
      if m == "GET" then
        return 200, XML, xml_doc("VersioningConfiguration", b.versioning and el("Status", b.versioning) or "")
      elseif m == "PUT" then
        local root, doc = s3xml.parse(req.body)
        local status = root == "VersioningConfiguration" and type(doc) == "table" and doc.Status or nil
        if status ~= "Enabled" and status ~= "Suspended" then
          fail(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema")
        end
        b.versioning = status
        return 200, {}, ""
      end
    elseif q.policy then
      if m == "GET" then
        if not b.policy then fail(404, "NoSuchBucketPolicy", "The bucket policy does not exist", { { "BucketName", bname } }) end
        return 200, { ["Content-Type"] = "application/json" }, b.policy.text
      elseif m == "PUT" then
        local doc = validate_policy(req.body)
        b.policy = { text = req.body, doc = doc }
        return 204, {}, ""
      elseif m == "DELETE" then
        b.policy = nil
        return 204, {}, ""
      end
    elseif q.lifecycle then
      if m == "GET" then
        if not b.lifecycle then
          fail(404, "NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist", { { "BucketName", bname } })
        end
        return 200, XML, '<?xml version="1.0" encoding="UTF-8"?>\n' .. b.lifecycle
      elseif m == "PUT" then
        return put_lifecycle(req, b)
      elseif m == "DELETE" then
        b.lifecycle = nil
        return 204, {}, ""
      end
    elseif q.location and m == "GET" then
      return 200, XML, xml_doc("LocationConstraint", region == "us-east-1" and "" or esc(region))
    elseif q.uploads and m == "GET" then
      return list_uploads(bname, q)
    elseif q.versions and m == "GET" then
      return list_versions(b, q)
    elseif q.delete and m == "POST" then
      return delete_many(b, req)
    elseif m == "GET" then
      for k in pairs(q) do
        if not ({ ["list-type"] = 1, prefix = 1, delimiter = 1, ["max-keys"] = 1, ["continuation-token"] = 1,
          ["start-after"] = 1, marker = 1, ["encoding-type"] = 1, ["fetch-owner"] = 1 })[k] then
          fail(501, "NotImplemented", "the lab S3 model does not implement the bucket subresource '" .. k .. "'")
        end
      end
      return list_objects(b, q)
    end
    local sub = next(q)
    if sub then
      fail(501, "NotImplemented", "the lab S3 model does not implement " .. m .. " on the bucket subresource '" .. sub .. "'")
    end
    fail(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
  end

  -- ---- objects ----------------------------------------------------------------

  -- One "bytes=first-last" / "bytes=first-" / "bytes=-suffix" range, as S3
  -- reads it (RFC 9110): a header that does not parse as one satisfiable-or-
  -- not range (first > last, several ranges, another unit) is ignored and the
  -- whole object is sent; a range that starts past the end, a zero suffix, or
  -- any range on an empty object is 416 InvalidRange.
  local function parse_range(h, size)
    local a, b = h:match("^bytes=(%d*)%-(%d*)$")
    if not a or (a == "" and b == "") then return nil end
    local first, last
    if a == "" then
      local n = tonumber(b)
      first, last = math.max(0, size - n), size - 1
      if n == 0 or size == 0 then first = nil end
    else
      first = tonumber(a)
      if b ~= "" and tonumber(b) < first then return nil end -- invalid: ignored
      last = b == "" and size - 1 or math.min(tonumber(b), size - 1)
      if first >= size then first = nil end
    end
    if not first then
      fail(416, "InvalidRange", "The requested range is not satisfiable",
        { { "RangeRequested", h }, { "ActualObjectSize", tostring(size) } })
    end
    return first, last
  end

  -- GetObject's response-* query parameters override these headers
  local RESPONSE_OVERRIDES = { ["response-content-type"] = "Content-Type",
    ["response-content-language"] = "Content-Language", ["response-expires"] = "Expires",
    ["response-cache-control"] = "Cache-Control", ["response-content-disposition"] = "Content-Disposition",
    ["response-content-encoding"] = "Content-Encoding" }

  local function get_object(req, b, key)
    local obj = find(b, key, req.query.versionId)
    if obj.delete_marker then
      fail(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
    end
    local h = object_headers(obj)
    local im, inm = req.headers["if-match"], req.headers["if-none-match"]
    if im and im ~= "*" and im:gsub('"', "") ~= obj.etag then precondition("If-Match") end
    if inm and (inm == "*" or inm:gsub('"', "") == obj.etag) then return 304, h, "" end
    for q, name in pairs(RESPONSE_OVERRIDES) do
      if req.query[q] then h[name] = req.query[q] end
    end
    local rh = req.headers["range"]
    if rh then
      local first, last = parse_range(rh, obj.size)
      if first then
        h["Content-Range"] = string.format("bytes %d-%d/%d", first, last, obj.size)
        return 206, h, nil, { file = obj.file, offset = first, length = last - first + 1 }
      end
    end
    if obj.size == 0 then return 200, h, "" end
    return 200, h, nil, { file = obj.file }
  end

  local function put_object(req, b, key)
    check_md5(req)
    check_conditions(req, key, current(b, key))
    local file = new_file()
    write_file(file, req.body)
    local obj = new_version(b, key, { file = file, size = #req.body, etag = crypto.hex(crypto.md5(req.body)),
      meta = user_meta(req), content_type = req.headers["content-type"] or "binary/octet-stream" })
    local h = { ETag = '"' .. obj.etag .. '"' }
    if b.versioning then h["x-amz-version-id"] = obj.version_id end
    return 200, h, ""
  end

  local function copy_source(req)
    local src = url_decode(req.headers["x-amz-copy-source"])
    local path, vid = src:match("^(.-)%?versionId=(.*)$")
    path = path or src
    local sbucket, skey = path:gsub("^/", ""):match("^([^/]+)/(.+)$")
    if not sbucket then fail(400, "InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey") end
    local src = find(bucket_of(sbucket), skey, vid ~= "" and vid or nil)
    if src.delete_marker then
      fail(400, "InvalidRequest", "The source of a copy request may not specifically refer to a delete marker by version id.")
    end
    return src
  end

  local function copy_object(req, b, key)
    local src = copy_source(req)
    check_conditions(req, key, current(b, key))
    local directive = req.headers["x-amz-metadata-directive"] or "COPY"
    if directive ~= "COPY" and directive ~= "REPLACE" then
      fail(400, "InvalidArgument", "Unknown metadata directive.")
    end
    -- the copy shares the source's (immutable) data file; its ETag is the
    -- MD5 of the data, as for any single-part object (S3 gives a copy of a
    -- multipart object a plain MD5 ETag)
    local etag = src.etag
    if etag:find("-", 1, true) then
      local md5, merr = crypto.md5_file(src.file)
      if not md5 then fail(500, "InternalError", "lab s3: " .. tostring(merr)) end
      etag = crypto.hex(md5)
    end
    local file = share(src.file)
    local meta, ctype = {}, src.content_type
    if directive == "REPLACE" then
      meta, ctype = user_meta(req), req.headers["content-type"] or src.content_type
    else
      for k, v in pairs(src.meta) do meta[k] = v end
    end
    local obj = new_version(b, key, { file = file, size = src.size, etag = etag, meta = meta, content_type = ctype })
    local h = XML
    if b.versioning then h = { ["Content-Type"] = "application/xml", ["x-amz-version-id"] = obj.version_id } end
    return 200, h, xml_doc("CopyObjectResult", el("LastModified", iso_ms(obj.modified)) .. el("ETag", '"' .. obj.etag .. '"'))
  end

  local function delete_object(req, b, key)
    local r = delete_version_or_key(b, key, req.query.versionId)
    local h = {}
    if r.marker then h["x-amz-delete-marker"] = "true" end
    if r.marker_version then h["x-amz-version-id"] = r.marker_version
    elseif r.version_id then h["x-amz-version-id"] = r.version_id end
    return 204, h, ""
  end

  -- multipart
  local function initiate(req, bname, key)
    local id = crypto.base64_encode(crypto.random_bytes(24)):gsub("[+/=]", { ["+"] = "-", ["/"] = "_", ["="] = "" })
    st.uploads[id] = { bucket = bname, key = key, parts = {}, meta = user_meta(req),
      content_type = req.headers["content-type"] or "binary/octet-stream", initiated = now_ms() }
    return 200, XML, xml_doc("InitiateMultipartUploadResult", el("Bucket", bname) .. el("Key", key) .. el("UploadId", id))
  end

  local function upload_of(req, bname, key)
    local id = req.query.uploadId
    local up = st.uploads[id]
    if not up or up.bucket ~= bname or up.key ~= key then
      fail(404, "NoSuchUpload", "The specified multipart upload does not exist. The upload ID may be invalid, " ..
        "or the upload may have been aborted or completed.", { { "UploadId", tostring(id) } })
    end
    return up, id
  end

  local function drop_upload(id)
    local up = st.uploads[id]
    if up then
      for _, p in pairs(up.parts) do release(p.file) end
      st.uploads[id] = nil
    end
  end

  local function upload_part(req, up)
    local n = math.tointeger(tonumber(req.query.partNumber or ""))
    if not n or n < 1 or n > 10000 then
      fail(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive")
    end
    local fp = dev.faults and dev.faults.config and dev.faults.config.failpart
    if fp and fp == n then
      dev.faults.counts.failpart = (dev.faults.counts.failpart or 0) + 1
      fail(500, "InternalError", "We encountered an internal error. Please try again.")
    end
    local file, etag, size
    if req.headers["x-amz-copy-source"] then
      local src = copy_source(req)
      local rh = req.headers["x-amz-copy-source-range"]
      local first, last = 0, src.size - 1
      if rh then
        first, last = rh:match("^bytes=(%d+)%-(%d+)$")
        first, last = tonumber(first), tonumber(last)
        if not first or last < first or last >= src.size then
          fail(400, "InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last within the object")
        end
      end
      size = last - first + 1
      file = new_file()
      etag = copy_range(src.file, first, size, file)
    else
      check_md5(req)
      file = new_file()
      write_file(file, req.body)
      etag, size = crypto.hex(crypto.md5(req.body)), #req.body
    end
    if up.parts[n] then release(up.parts[n].file) end
    up.parts[n] = { etag = etag, size = size, file = file }
    if req.headers["x-amz-copy-source"] then
      return 200, XML, xml_doc("CopyPartResult", el("ETag", '"' .. etag .. '"') .. el("LastModified", iso_ms(now_ms())))
    end
    return 200, { ETag = '"' .. etag .. '"' }, ""
  end

  local function complete(req, b, up, id)
    if dev.faults and dev.faults.chance("completeerr") then
      -- S3 may answer 200 and put the error in the body
      return 200, XML, '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' .. el("Code", "InternalError") ..
        el("Message", "We encountered an internal error. Please try again.") .. el("RequestId", random_id(8)) .. "</Error>"
    end
    local root, doc = s3xml.parse(req.body, { "Part" })
    if root ~= "CompleteMultipartUpload" or type(doc) ~= "table" then
      fail(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema")
    end
    local parts = doc.Part or {}
    if #parts == 0 then fail(400, "MalformedXML", "You must specify at least one part") end
    local prev = 0
    local list = {}
    for _, p in ipairs(parts) do
      local n = math.tointeger(tonumber(type(p) == "table" and p.PartNumber or ""))
      local etag = type(p) == "table" and type(p.ETag) == "string" and p.ETag:gsub('"', "") or nil
      local have = n and up.parts[n]
      if not have or have.etag ~= etag then
        fail(400, "InvalidPart", "One or more of the specified parts could not be found. The part may not have " ..
          "been uploaded, or the specified entity tag may not match the part's entity tag.")
      end
      if n <= prev then fail(400, "InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by part number.") end
      prev = n
      list[#list + 1] = n
    end
    for i = 1, #list - 1 do
      if up.parts[list[i]].size < M.MIN_PART then
        fail(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size.")
      end
    end
    check_conditions(req, up.key, current(b, up.key))
    local file = new_file()
    local f, err = io.open(file, "wb")
    if not f then fail(500, "InternalError", "lab s3: cannot write " .. file .. ": " .. tostring(err)) end
    local md5s, size = {}, 0
    for _, n in ipairs(list) do
      local p = up.parts[n]
      local src = io.open(p.file, "rb")
      while src do
        local chunk = src:read(1024 * 1024)
        if not chunk then break end
        f:write(chunk)
      end
      if src then src:close() end
      md5s[#md5s + 1] = (p.etag:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
      size = size + p.size
    end
    f:close()
    local etag = crypto.hex(crypto.md5(table.concat(md5s))) .. "-" .. #list
    local obj = new_version(b, up.key, { file = file, size = size, etag = etag, meta = up.meta,
      content_type = up.content_type })
    local key = up.key
    drop_upload(id)
    local h = { ["Content-Type"] = "application/xml" }
    if b.versioning then h["x-amz-version-id"] = obj.version_id end
    return 200, h, xml_doc("CompleteMultipartUploadResult", el("Location", "/" .. b.name .. "/" .. key) ..
      el("Bucket", b.name) .. el("Key", key) .. el("ETag", '"' .. etag .. '"'))
  end

  local function object_request(req, bname, key)
    local m, q = req.method, req.query
    local b = bucket_of(bname)
    if #key > 1024 then fail(400, "KeyTooLongError", "Your key is too long") end
    if m == "POST" and q.uploads then return initiate(req, bname, key) end
    if q.uploadId then
      local up, id = upload_of(req, bname, key)
      if m == "PUT" then return upload_part(req, up) end
      if m == "POST" then return complete(req, b, up, id) end
      if m == "DELETE" then
        drop_upload(id)
        return 204, {}, ""
      end
      fail(501, "NotImplemented", "the lab S3 model does not implement " .. m .. " on an upload (ListParts)")
    end
    for k in pairs(q) do
      if k ~= "versionId" and not (RESPONSE_OVERRIDES[k] and (m == "GET" or m == "HEAD")) then
        fail(501, "NotImplemented", "the lab S3 model does not implement the object subresource '" .. k .. "'")
      end
    end
    if m == "PUT" then
      if req.headers["x-amz-copy-source"] then return copy_object(req, b, key) end
      return put_object(req, b, key)
    elseif m == "GET" or m == "HEAD" then
      return get_object(req, b, key)
    elseif m == "DELETE" then
      return delete_object(req, b, key)
    end
    fail(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
  end

  -- ---- anonymous requests: judged by the bucket policy --------------------------

  local BUCKET_ACTIONS = {
    GET = { [""] = "s3:ListBucket", versions = "s3:ListBucketVersions", uploads = "s3:ListBucketMultipartUploads",
      policy = "s3:GetBucketPolicy", versioning = "s3:GetBucketVersioning", location = "s3:GetBucketLocation",
      lifecycle = "s3:GetLifecycleConfiguration" },
    HEAD = { [""] = "s3:ListBucket" },
    PUT = { [""] = "s3:CreateBucket", policy = "s3:PutBucketPolicy", versioning = "s3:PutBucketVersioning",
      lifecycle = "s3:PutLifecycleConfiguration" },
    DELETE = { [""] = "s3:DeleteBucket", policy = "s3:DeleteBucketPolicy", lifecycle = "s3:PutLifecycleConfiguration" },
    POST = { delete = "s3:DeleteObject" }, -- checked per key in delete_many
  }

  --- The IAM action and resource ARN a request needs (S3's authorization
  -- mapping, for the operations the model implements).
  local function request_action(req, bname, key)
    local m, q = req.method, req.query
    if key then
      local arn = "arn:aws:s3:::" .. bname .. "/" .. key
      if m == "GET" or m == "HEAD" then
        if q.uploadId then return "s3:ListMultipartUploadParts", arn end
        return q.versionId and "s3:GetObjectVersion" or "s3:GetObject", arn
      elseif m == "PUT" or m == "POST" then
        return "s3:PutObject", arn
      elseif m == "DELETE" then
        if q.uploadId then return "s3:AbortMultipartUpload", arn end
        return q.versionId and "s3:DeleteObjectVersion" or "s3:DeleteObject", arn
      end
      return nil
    end
    local sub = ""
    for k in pairs(q) do
      if BUCKET_ACTIONS[m] and BUCKET_ACTIONS[m][k] then sub = k end
    end
    return BUCKET_ACTIONS[m] and BUCKET_ACTIONS[m][sub], "arn:aws:s3:::" .. bname
  end

  local function anonymous_may(bname, action, resource)
    local b = st.buckets[bname]
    return b ~= nil and b.policy ~= nil and action ~= nil and
      M.policy_allows_anonymous(b.policy.doc, action, resource)
  end

  local function deny_anonymous()
    st.denied = st.denied + 1
    fail(403, "AccessDenied", "Access Denied")
  end

  local function check_anonymous(req, bname, key)
    if not bname then deny_anonymous() end
    bucket_of(bname) -- a bucket that does not exist is NoSuchBucket, also to anyone
    for q in pairs(req.query) do
      if RESPONSE_OVERRIDES[q] then
        fail(400, "InvalidRequest", "Request specific response headers cannot be used for anonymous GET requests.")
      end
    end
    local action, resource = request_action(req, bname, key)
    if action == "s3:DeleteObject" and not key then return end -- DeleteObjects: per key
    if not anonymous_may(bname, action, resource) then deny_anonymous() end
  end

  local HOST_ID = crypto.base64_encode(crypto.random_bytes(48))

  local function error_response(req, e)
    local id = random_id(8)
    local h = { ["Content-Type"] = "application/xml", ["x-amz-request-id"] = id, ["x-amz-id-2"] = HOST_ID }
    if req.method == "HEAD" then return e.status, h, "" end
    local extra = {}
    for _, kv in ipairs(e.extra or {}) do extra[#extra + 1] = el(kv[1], kv[2]) end
    return e.status, h, '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' .. el("Code", e.code) ..
      el("Message", e.message) .. table.concat(extra) .. el("RequestId", id) .. el("HostId", HOST_ID) .. "</Error>"
  end

  function dev.handler(req)
    st.requests = st.requests + 1
    if req.method ~= "GET" and req.method ~= "HEAD" then st.writes = st.writes + 1 end
    local bname, key = req.path:match("^/([^/]+)/(.+)$")
    if not bname then bname = req.path:match("^/([^/]+)/?$") end
    local ok, s, h, body, opt = pcall(function()
      req.anonymous = not authenticate(req)
      if req.anonymous then check_anonymous(req, bname, key) end
      if req.query["X-Amz-Signature"] then
        local q = {}
        for k, v in pairs(req.query) do if not PRESIGN_KEYS[k] then q[k] = v end end
        req.query = q
      end
      if not bname then
        if req.method == "GET" then return list_buckets() end
        fail(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
      end
      if key then return object_request(req, bname, key) end
      return bucket_request(req, bname)
    end)
    if not ok then
      if getmetatable(s) ~= S3Error then error(s, 0) end
      -- without s3:ListBucket, a missing key is not revealed to anyone: 403 (as S3)
      if req.anonymous and s.code == "NoSuchKey" and not anonymous_may(bname, "s3:ListBucket", "arn:aws:s3:::" .. bname) then
        s = setmetatable({ status = 403, code = "AccessDenied", message = "Access Denied" }, S3Error)
      end
      return error_response(req, s)
    end
    h = h or {}
    h["x-amz-request-id"] = h["x-amz-request-id"] or random_id(8)
    h["x-amz-id-2"] = HOST_ID
    return s, h, body, opt
  end

  function dev.fault_503()
    return error_response({ method = "GET", path = "/" },
      { status = 503, code = "SlowDown", message = "Please reduce your request rate." })
  end

  function dev.state()
    local buckets = {}
    for n, b in pairs(st.buckets) do
      local objects, versions = 0, 0
      for _, vs in pairs(b.objects) do
        versions = versions + #vs
        if live(vs[#vs]) then objects = objects + 1 end
      end
      buckets[n] = { versioning = b.versioning or json.null, policy = b.policy and true or false,
        objects = objects, versions = versions }
    end
    local uploads = 0
    for _ in pairs(st.uploads) do uploads = uploads + 1 end
    return { buckets = buckets, uploads = uploads, requests = st.requests, writes = st.writes, denied = st.denied,
      data_dir = dir, access_key = access_key, faults = dev.faults and dev.faults.counts or nil }
  end

  -- the same S3 also answers plain HTTP on a second port: the address
  -- anonymous readers (iDRAC 8 virtual media: http only) are given
  dev.plain_http = true

  function dev.site_entry(url, tls, endpoint)
    return "s3", { endpoint = url, region = region, bucket = ctx.bucket or M.BUCKET,
      public_bucket = ctx.public_bucket or M.PUBLIC_BUCKET, path_style = true,
      public_endpoint = endpoint and endpoint.http_url or nil,
      access_key = access_key, secret_key = secret_key, tls = tls }
  end

  function dev.close()
    remove_tree(dir)
  end

  -- the site's buckets: a private versioned one and a public one whose
  -- PUBLIC_PREFIX is readable by anyone (the field notes' policy)
  local bucket = ctx.bucket or M.BUCKET
  local public = ctx.public_bucket or M.PUBLIC_BUCKET
  create_bucket(bucket)
  st.buckets[bucket].versioning = "Enabled"
  create_bucket(public)
  local policy = json.encode({ Version = "2012-10-17", Statement = { { Sid = "PublicRead", Effect = "Allow",
    Principal = { AWS = { "*" } }, Action = { "s3:GetObject" },
    Resource = { "arn:aws:s3:::" .. public .. "/" .. M.PUBLIC_PREFIX .. "*" } } } })
  st.buckets[public].policy = { text = policy, doc = json.decode(policy) }
  return dev
end

return M
