-- Run the iSCSI component once against a site file; used by the iSCSI specs
-- and campaigns (tests/iscsi_campaign.lua).
-- usage: sbot run iscsi_run.lua SITE SERVER_ID [MODE] [CONFIG_JSON]
-- Prints "process" on stderr when the process phase starts (so a test can
-- kill it there), then the results as JSON on stdout. Exit 0 when ok.
local json = require "sbot.json"
local site_mod = require "sbot.site"
local site = assert(site_mod.load(arg[1]))
local server = assert(site_mod.server(site, arg[2]))
local config = arg[4] and json.decode(arg[4]) or {}
local Iscsi = require "sbot.component.iscsi"
local c = assert(Iscsi.new(config, { id = server.id, site = site, server = server,
  artifact_dir = os.getenv("ISCSI_ARTIFACTS") }))
local r = c:execute { mode = arg[3] or "apply", before_process = function()
  io.stderr:write("process\n")
  io.stderr:flush()
end }
io.stdout:write(json.encode(r, { secrets = "redact" }), "\n")
os.exit(r.status == "ok" and 0 or 1)
