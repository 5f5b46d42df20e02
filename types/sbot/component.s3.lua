---@meta sbot.component.s3
-- LuaCATS stub of sbot.component.s3 (components/s3.c): S3 for a site (a site-wide step): a private bucket with versioning, a public bucket whose policy lets anonymous readers GET the published prefixes only, lifecycle rules, the given files uploaded (SHA-256 in metadata, multipart when large) and published by server-side copy, and the metadata index kept with conditional writes.
-- Its config schema, hooks and phases: `sbot help component s3`; docs/component-s3.md.

---@class sbot.component.s3: sbot.component.Module
local M = {}

---@param config table the component's config (sbot help component s3)
---@param opts? sbot.component.Opts
---@return sbot.component.instance|nil c
---@return string? err
---@return "invalid"|nil code the config does not validate (docs/errors.md)
function M.new(config, opts) end

return M
