--- Helpers for the iSCSI component against `sbot lab --tgt`: run the
-- component in its own process (tests/support/scripts/iscsi_run.lua), read the
-- lab's TrueNAS state, count write calls, and check that no duplicate and no
-- sbot-marked orphan is left. Used by tests/lua/iscsi_component_spec.lua and
-- the campaign script tests/iscsi_campaign.lua.
local json = require "sbot.json"
local helpers = require "helpers"
local labclient = require "labclient"

local M = {}
M.VERSION = "4.14.3"
M.CONFIG = { version = M.VERSION, zvol = { size = "64M" }, call_timeout = 0.5, probe_timeout = 10 }

function M.start_lab(extra)
  local args = { "--servers", "2", "--tgt", "--time-scale", "0.1" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local lab = labclient.start_lab(args)
  lab.site_file = lab.dir .. "/site.lua"
  return lab
end

function M.truenas(lab) return lab.state().devices.truenas end

local function merged(extra)
  local c = json.decode(json.encode(M.CONFIG))
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

--- Run the component in a child process; returns {code, result (table or nil), stdout, stderr}.
function M.run(lab, server, config, mode, site_file)
  local r = helpers.sbot({ "run", helpers.source_dir .. "/tests/support/scripts/iscsi_run.lua",
    site_file or lab.site_file, server, mode or "apply", json.encode(merged(config)) },
    { env = "ISCSI_ARTIFACTS=" .. helpers.shquote(lab.dir .. "/artifacts") })
  r.result = json.decode((r.stdout:match("[^\n]*") or ""))
  return r
end

--- Start a run in the background; returns the process handle (its output
-- file gets "process" when the process phase starts).
function M.spawn(lab, server, config)
  local parts = { "env", "ISCSI_ARTIFACTS=" .. helpers.shquote(lab.dir .. "/artifacts"), helpers.shquote(helpers.sbot_bin), "run",
    helpers.shquote(helpers.source_dir .. "/tests/support/scripts/iscsi_run.lua"),
    helpers.shquote(lab.site_file), helpers.shquote(server), "apply", helpers.shquote(json.encode(merged(config))) }
  return helpers.spawn(table.concat(parts, " "))
end

--- Problems in the TrueNAS state: duplicates, and sbot-marked objects of
-- `servers` that are not part of a converged chain. Returns a list of strings.
function M.problems(st, servers)
  local out = {}
  local function dup(list, key, what)
    local seen = {}
    for _, o in ipairs(list) do
      local k = o[key]
      if seen[k] then out[#out + 1] = "duplicate " .. what .. " " .. tostring(k) end
      seen[k] = true
    end
  end
  dup(st.datasets, "id", "dataset")
  dup(st.iscsi.targets, "name", "target")
  dup(st.iscsi.extents, "name", "extent")
  dup(st.iscsi.extents, "disk", "extent disk")
  local mapped_extent, mapped_target = {}, {}
  for _, te in ipairs(st.iscsi.targetextents) do
    if mapped_extent[te.extent] then out[#out + 1] = "extent " .. te.extent .. " mapped twice" end
    mapped_extent[te.extent], mapped_target[te.target] = true, true
  end
  for _, server in ipairs(servers) do
    local mark = "sbot:" .. server
    local n_groups, used_groups = 0, {}
    for _, t in ipairs(st.iscsi.targets) do
      for _, g in ipairs(t.groups) do used_groups[g.initiator] = true end
      if type(t.alias) == "string" and (t.alias == mark or t.alias:sub(1, #mark + 1) == mark .. " ")
          and not mapped_target[t.id] then
        out[#out + 1] = "orphan target " .. t.name
      end
    end
    for _, e in ipairs(st.iscsi.extents) do
      if e.comment == mark and not mapped_extent[e.id] then out[#out + 1] = "orphan extent " .. e.name end
    end
    for _, g in ipairs(st.iscsi.initiators) do
      if g.comment == mark then
        n_groups = n_groups + 1
        if not used_groups[g.id] then out[#out + 1] = "orphan initiator group " .. g.id end
      end
    end
    local zvols = 0
    for _, ds in ipairs(st.datasets) do
      if ds.comments == mark then
        zvols = zvols + 1
        local used = false
        for _, e in ipairs(st.iscsi.extents) do if e.disk == "zvol/" .. ds.id then used = true end end
        if not used then out[#out + 1] = "orphan zvol " .. ds.id end
      end
    end
    if zvols > 1 then out[#out + 1] = zvols .. " zvols marked " .. mark end
    -- CHAP entries sbot made for the server (its mark as peeruser) that no target names
    local named = {}
    for _, t in ipairs(st.iscsi.targets) do
      for _, g in ipairs(t.groups) do if type(g.auth) == "number" then named[g.auth] = true end end
    end
    for _, a in ipairs(st.iscsi.auths or {}) do
      if a.peeruser == mark and not named[a.tag] then
        out[#out + 1] = "orphan CHAP entry of user " .. a.user .. " (tag " .. a.tag .. ")"
      end
    end
  end
  return out
end

return M
