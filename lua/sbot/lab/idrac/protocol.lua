--- sbot.lab.idrac.protocol: how the simulated iDRAC answers — Redfish
-- bodies, Dell error shapes, collections and links. Every other part of the
-- model builds its answers with these.
--
-- Errors are Redfish `{"error": {"code", "message", "@Message.ExtendedInfo"}}`
-- bodies whose MessageIds carry the flavour's registry prefix (IDRAC.1.6. /
-- Base.1.2. on iDRAC 8). Some real errors give `@Message.ExtendedInfo` as one
-- object rather than a list; `fail(..., {single = true})` does that.
local json = require "sbot.json"

local M = {}

local function arr(t) return json.array(t or {}) end
M.arr = arr

function M.link(path) return { ["@odata.id"] = path } end

function M.copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = M.copy(v) end
  return setmetatable(c, getmetatable(t))
end

function M.set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

function M.iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%S+00:00", math.floor(t))
end

--- A path as it appears in @odata.id: the characters real iDRACs send
-- percent-encoded ('|' as %7C) encoded. The model keys resources by the
-- decoded path (what sbot.httpd hands a handler).
function M.encode(path)
  return (path:gsub("|", "%%7C"))
end

--- Helpers bound to one flavour (its message registries).
function M.new(F)
  local P = {}

  -- body: a table (encoded here), a string (already JSON) or nil (empty)
  function P.reply(status, body, headers)
    headers = headers or {}
    headers["Content-Type"] = "application/json;odata.metadata=minimal;charset=utf-8"
    headers["OData-Version"] = "4.0"
    headers["Server"] = F.server
    headers["Cache-Control"] = "no-cache"
    if type(body) == "table" then body = json.encode(body) end
    return status, headers, body or ""
  end

  function P.message_id(id)
    return id:match("^%u%u%u?%d") and (F.msg .. id) or (F.base .. id)
  end

  function P.info(id, message, o)
    o = o or {}
    local args = o.args or {}
    local props = o.props or {}
    return {
      Message = message,
      MessageArgs = arr(args),
      ["MessageArgs@odata.count"] = #args,
      MessageId = P.message_id(id),
      RelatedProperties = arr(props),
      ["RelatedProperties@odata.count"] = #props,
      Resolution = o.resolution or "Retry the operation with correct values.",
      Severity = o.severity or "Warning",
    }
  end

  --- A Dell-style Redfish error. id: a Dell id (RAC0218) or a Base registry
  -- name (PropertyUnknown). o: args, props, resolution, severity, headers,
  -- single (ExtendedInfo as one object), extra (more info entries).
  function P.fail(status, id, message, o)
    o = o or {}
    local info = P.info(id, message, o)
    local ext
    if o.single then
      ext = info
    else
      ext = { info }
      for _, e in ipairs(o.extra or {}) do ext[#ext + 1] = e end
      ext = arr(ext)
    end
    return P.reply(status, { error = {
      ["@Message.ExtendedInfo"] = ext,
      code = F.base .. "GeneralError",
      message = "A general error has occurred. See ExtendedInfo for more information",
    } }, o.headers)
  end

  function P.success(status, headers)
    return P.reply(status or 200, { ["@Message.ExtendedInfo"] = arr({ {
      Message = "Successfully Completed Request", MessageArgs = arr(),
      ["MessageArgs@odata.count"] = 0, MessageId = F.base .. "Success",
      RelatedProperties = arr(), ["RelatedProperties@odata.count"] = 0,
      Resolution = "None", Severity = "OK" } }) }, headers)
  end

  function P.odata(path, typ, extra)
    local t = { ["@odata.id"] = M.encode(path), ["@odata.type"] = typ,
      ["@odata.context"] = "/redfish/v1/$metadata#" .. (typ:match("^#([^%.]+)") or "") .. "." ..
        (typ:match("%.([%w_]+)$") or "") }
    for k, v in pairs(extra or {}) do t[k] = v end
    return t
  end

  --- A collection body; members are paths (decoded) in the order given.
  function P.collection(path, typ, name, members)
    local m = {}
    for _, p in ipairs(members) do m[#m + 1] = M.link(M.encode(p)) end
    return P.odata(path, typ, { Name = name, Members = arr(m), ["Members@odata.count"] = #m,
      Description = name })
  end

  function P.malformed()
    return P.fail(400, "MalformedJSON",
      "The request body submitted was malformed JSON and could not be parsed by the receiving service.")
  end

  function P.unknown_property(k, prefix)
    return P.fail(400, "PropertyUnknown", string.format(
      "The property %s is not in the list of valid properties for the resource.", k),
      { args = { k }, props = { "#/" .. (prefix or "") .. k } })
  end

  return P
end

return M
