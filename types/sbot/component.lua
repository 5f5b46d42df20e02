---@meta sbot.component
-- LuaCATS type definitions of sbot.component (lua/sbot/component.lua: the C core
-- sbot.lifecycle, engine/lifecycle.c, wired to its collaborators): the
-- component lifecycle discover -> process -> housekeep. Reference: docs/lifecycle.md.

---@class sbot.component.Change
---@field resource string
---@field action "create"|"update"|"delete"
---@field before? any
---@field after? any
---@field reason? string

---@class sbot.component.Spec
---@field name string identifier; registered as sbot.component.<name>
---@field description? string
---@field schema? table config schema (docs/site.md)
---@field open? fun(self: sbot.component.instance): any the resource, once before the first phase
---@field discover? fun(self: sbot.component.instance, res: any): table read-only
---@field plan? fun(self: sbot.component.instance, res: any): sbot.component.Change[]
---@field apply? fun(self: sbot.component.instance, change: sbot.component.Change, res: any): table|nil
---@field undo? fun(self: sbot.component.instance, change: sbot.component.Change, res: any)
---@field housekeep? fun(self: sbot.component.instance, res: any): table|nil
---@field hooks? table<string, {description: string, default?: function}>

---@class sbot.component.Opts
---@field id? string the server id
---@field step? string the workflow step's name
---@field artifact_dir? string
---@field site? table
---@field server? table

---@class sbot.component.Results
---@field component string
---@field id string
---@field step? string
---@field status "pending"|"ok"|"failed"|"skipped"
---@field mode? "apply"|"plan"
---@field error? string
---@field phases table<string, table>
---@field discovery table
---@field plan? sbot.component.Change[]
---@field processing? table
---@field housekeeping? table
---@field artifacts table[]

---A component module (what component.define and require "sbot.component.<name>" give).
---@class sbot.component.Module
---@field name string
---@field description? string
---@field schema? table
---@field hooks? table
---@field spec sbot.component.Spec
local Module = {}
---@param config table validated against the schema
---@param opts? sbot.component.Opts
---@return sbot.component.instance|nil c
---@return string? err every problem, one per line
---@return "invalid"|nil code the config does not validate (docs/errors.md)
function Module.new(config, opts) end

---An instance: a component for one server (a to-be-closed value).
---@class sbot.component.instance: sbot.component.Results
---@field config table validated, defaults filled
---@field resource? any what open returned, while open
local Instance = {}
---@return table|nil discovery
---@return string? err
function Instance:discover() end
---Process in plan mode (no apply).
---@return sbot.component.Change[]|nil plan
---@return string? err
function Instance:plan() end
---@param opts? {mode?: "apply"|"plan", before?: function}
---@return table|nil processing
---@return string? err
function Instance:process(opts) end
---@return table|nil housekeeping
---@return string? err
function Instance:housekeep() end
---Reset and run the phases asked for, in lifecycle order; always closes the resource.
---@param opts? {phases?: string[], mode?: "apply"|"plan", strict?: boolean, before_process?: function}
---@return sbot.component.Results results
function Instance:execute(opts) end
---@return sbot.component.Results results
function Instance:results() end
---@param opts? {indent?: boolean}
---@return string json secrets redacted
function Instance:to_json(opts) end
---Record an artifact (from a phase).
---@param spec {key: string, file?: string, content?: string, type?: string, metadata?: table}
---@return table entry
function Instance:artifact(spec) end
---Close the resource open() returned (idempotent).
---@return true|nil ok
---@return string? err
function Instance:close() end
---The site's hooks[name], else the declared default.
---@param name string
---@param ... any
---@return any
function Instance:hook(name, ...) end

local component = {}

---@param spec sbot.component.Spec
---@return sbot.component.Module
function component.define(spec) end
---@param v any
---@return boolean
function component.is_instance(v) end
---@return string[] names of the components defined so far
function component.loaded() end
---@return string[] dirs where require "sbot.component.<name>" looks for <name>.lua
function component.path() end
---Hand the lifecycle its collaborators (sbot.component does, once per state).
---@param collaborators sbot.lifecycle.Collaborators
function component.configure(collaborators) end

return component
