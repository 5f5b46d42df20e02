---@meta sbot.component.vault
-- LuaCATS stub of sbot.component.vault (components/vault.c): Pre-flight check of the site's HashiCorp Vault: reachable and unsealed, sbot's token valid (TTL, policies), the KV mount's version, and every secret:PATH:KEY reference of the site readable. Read-only.
-- Its config schema, hooks and phases: `sbot help component vault`; docs/vault.md.

---@class sbot.component.vault: sbot.component.Module
local M = {}

---@param config table the component's config (sbot help component vault)
---@param opts? sbot.component.Opts
---@return sbot.component.instance|nil c
---@return string? err
---@return "invalid"|nil code the config does not validate (docs/errors.md)
function M.new(config, opts) end

return M
