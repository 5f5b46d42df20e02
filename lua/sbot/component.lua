--- sbot.component: the component lifecycle (docs/lifecycle.md).
--
-- The machinery is the C core `sbot.lifecycle` (engine/lifecycle.c). It
-- requires no Lua module — a C primitive does not call up into the Lua
-- library (DESIGN.md, "Layers") — so what it needs from that library is
-- handed to it here, once per Lua state: config schemas (sbot.schema), artifact
-- records (sbot.artifact) and results as JSON (sbot.json). This module is the
-- core itself, wired; the runtime requires it before it opens a C component
-- (sbot.component.<name>), so `require "sbot.component.iscsi"` alone works too.
local lifecycle = require "sbot.lifecycle"
local artifact = require "sbot.artifact"
local json = require "sbot.json"
local schema = require "sbot.schema"

lifecycle.configure {
  validate = schema.validate,
  check = schema.check,
  record_artifact = artifact.record,
  encode = json.encode,
}

return lifecycle
