---@meta sbot.lifecycle
-- LuaCATS type definitions of sbot.lifecycle (engine/lifecycle.c): the C core of
-- sbot.component, the same table; scripts require "sbot.component", which
-- hands the core its collaborators. Reference: docs/lifecycle.md.

---What the core needs from the Lua library, passed in (every one required).
---@class sbot.lifecycle.Collaborators
---@field validate fun(spec: table, config: table, where: string): table|nil, string? sbot.schema.validate
---@field check fun(spec: table) sbot.schema.check
---@field record_artifact fun(self: sbot.component.instance, spec: table): table sbot.artifact.record
---@field encode fun(value: any, opts: table): string sbot.json.encode

local lifecycle = {}

---Set (or replace) the collaborators; raises on an unknown or missing one.
---@param collaborators sbot.lifecycle.Collaborators
function lifecycle.configure(collaborators) end
---@param spec sbot.component.Spec
---@return sbot.component.Module
function lifecycle.define(spec) end
---@param v any
---@return boolean
function lifecycle.is_instance(v) end
---@return string[] names of the components defined so far
function lifecycle.loaded() end
---@return string[] dirs where require "sbot.component.<name>" looks for <name>.lua
function lifecycle.path() end

return lifecycle
