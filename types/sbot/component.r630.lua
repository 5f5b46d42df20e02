---@meta sbot.component.r630
-- LuaCATS stub of sbot.component.r630 (components/r630.c): Dell PowerEdge R630 (iDRAC 8; iDRAC 9 machines too) over Redfish: BIOS and NIC iSCSI boot settings checked against the attribute registry, one configuration job per Settings target, the virtual CD booted once, exactly one reboot, verified by reading everything back.
-- Its config schema, hooks and phases: `sbot help component r630`; docs/r630.md.

---@class sbot.component.r630: sbot.component.Module
local M = {}

---@param config table the component's config (sbot help component r630)
---@param opts? sbot.component.Opts
---@return sbot.component.instance|nil c
---@return string? err
---@return "invalid"|nil code the config does not validate (docs/errors.md)
function M.new(config, opts) end

return M
