---@meta sbot.component.openshift
-- LuaCATS stub of sbot.component.openshift (components/openshift.c): The cluster's agent ISO (site-wide step): install-config.yaml and agent-config.yaml rendered from the site's openshift section and cluster servers, checked against each other, built with the real `openshift-install agent create image` (downloaded from the mirror, SHA-256 checked, cached), verified (ISO 9660, El Torito) and kept in the artifact store, once per (version, configs). docs/openshift.md
-- Its config schema, hooks and phases: `sbot help component openshift`; docs/openshift.md.

---@class sbot.component.openshift: sbot.component.Module
local M = {}

---@param config table the component's config (sbot help component openshift)
---@param opts? sbot.component.Opts
---@return sbot.component.instance|nil c
---@return string? err
---@return "invalid"|nil code the config does not validate (docs/errors.md)
function M.new(config, opts) end

---Check an agent ISO: ISO 9660 with El Torito boot records, and its digest.
---@param path string
---@return {size: integer, sha256: string, volume_id: string, blocks: integer, el_torito: table}|nil info
---@return string? err
function M.verify_iso(path) end

---discover's checks of the site against itself, alone (no store, cache or mirror); raises
---with every problem, one per line, as discover would fail (docs/openshift.md).
---@param c sbot.component.instance an instance made by M.new(config, {site = site})
---@return {cluster: string, version: string, platform: "baremetal"|"none", masters: integer, workers: integer, rendezvous_ip: string} summary
function M.check(c) end

return M
