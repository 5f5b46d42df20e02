--- workflows/iso_to_s3.lua: store a file (e.g. an agent ISO) in the site's
-- private S3 bucket, publish it to the public bucket (a server-side copy,
-- readable anonymously), update the metadata index, and print the public URL.
--
--   sbot run workflows/iso_to_s3.lua --site site.lua agent.iso
--   sbot run workflows/iso_to_s3.lua --site site.lua agent.iso --plan   # what would be uploaded and changed
--
-- A site-wide workflow: one step of the S3 component (components/s3.c,
-- docs/component-s3.md) with the file as its artifact; the site's `s3`
-- section gives the endpoint, buckets and credentials, and
-- `components.s3` any other component setting (publish prefixes, lifecycle).
local workflow = require "sbot.workflow"
local S3 = require "sbot.component.s3"
local log = require "sbot.log"

local wf = workflow.new {
  name = "iso_to_s3",
  description = "Store a file in the site's private S3 bucket, publish it to the public bucket, "
    .. "update the index and print its public URL.",
  epilog = "The key is isos/<file name> unless --key gives another; it must be under one of the "
    .. "component's published prefixes (components.s3.publish, default isos/).",
  arguments = function(p)
    p:argument("file", "The file to publish (e.g. an agent ISO).")
    p:option("--key", "Key under the site's S3 prefix (default: isos/<file name>).")
    p:option("--content-type", "Content-Type of the object.", "application/octet-stream")
  end,
  site_steps = function(ctx)
    local file = ctx.args.file
    local key = ctx.args.key or ("isos/" .. file:match("([^/]+)$"))
    local r = ctx:step(S3, ctx:config("s3", {
      artifacts = { { key = key, file = file, content_type = ctx.args.content_type, publish = true } } }))
    local art = r.discovery and r.discovery.artifacts and r.discovery.artifacts[1]
    if not art or not art.public_url then return end
    if ctx.args.json then return end -- the URL is in the run record (discovery.artifacts[1].public_url)
    -- in --plan, the URL serves this file only once the planned changes are made
    local pending = r.status ~= "ok" or (ctx.args.plan and #(r.plan or {}) > 0)
    local done = not pending
    io.stdout:write(done and "public URL: " or "public URL (after an apply run): ", art.public_url, "\n")
    io.stdout:flush()
    log.info("published", { key = key, url = art.public_url, ok = done })
  end,
}
os.exit(wf:main(arg), true)
