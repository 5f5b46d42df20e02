---@meta sbot.component.iscsi
-- LuaCATS stub of sbot.component.iscsi (components/iscsi.c): A bootable iSCSI disk per server on TrueNAS SCALE: zvol, portal, initiator group, target, extent, mapping, iscsitarget running; verified by a real iSCSI login.
-- Its config schema, hooks and phases: `sbot help component iscsi`; docs/iscsi.md.

---@class sbot.component.iscsi: sbot.component.Module
local M = {}

---@param config table the component's config (sbot help component iscsi)
---@param opts? sbot.component.Opts
---@return sbot.component.instance|nil c
---@return string? err
---@return "invalid"|nil code the config does not validate (docs/errors.md)
function M.new(config, opts) end

---A disk's address as discover computes it, from the instance's config, the site and the
---hooks, without asking TrueNAS (docs/iscsi.md, "IscsiComponent.address").
---@param c sbot.component.instance an instance made by M.new(config, {id, site, server})
---@param global? {basename?: string, listen_port?: integer} what iscsi.global.config says
---@return {iqn: string, portal: string, portal_ip: string, lun: integer, initiator: string, initiators: string[], names: {zvol: string, target: string, extent: string}, version: string, basename: string, mark: string}|nil address
---@return string? err what only TrueNAS knows and the site does not say
function M.address(c, global) end

return M
