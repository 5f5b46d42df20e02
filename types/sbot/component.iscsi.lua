---@meta sbot.component.iscsi
-- LuaCATS stub of sbot.component.iscsi (components/iscsi.c): A bootable iSCSI disk per server on TrueNAS SCALE: zvol, portal, initiator group, target, extent, mapping, iscsitarget running; verified by a real iSCSI login.
-- Its config schema, hooks and phases: `sbot help component iscsi`; docs/iscsi.md.

---@class sbot.component.iscsi: sbot.component.Module
local M = {}

---@param config table the component's config (sbot help component iscsi)
---@param opts? sbot.component.Opts
---@return sbot.component.instance|nil c
---@return string? err
---@return "config"|nil code
function M.new(config, opts) end

return M
