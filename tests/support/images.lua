--- Boot images for virtual-media tests: a minimal ISO 9660 file (what an
-- iDRAC reads first: the primary volume descriptor at sector 16) and the
-- image server of tests/servers/image_server.lua (HTTP with Range, or
-- without it).
local helpers = require "helpers"

local M = {}

--- Write a small ISO 9660 image with the given volume id; returns its path.
function M.make_iso(path, volume_id, size)
  size = size or 64 * 1024
  local pvd = "\1CD001\1\0" .. string.rep(" ", 32) .. string.format("%-32s", volume_id)
  local data = string.rep("\0", 32768) .. pvd
  data = data .. string.rep("\0", size - #data)
  helpers.write_file(path, data)
  return path
end

--- Start an image server over dir (opts.no_range: ignore Range requests).
-- Returns {url(name), stop(), log()}.
function M.server(dir, opts)
  opts = opts or {}
  os.remove(dir .. "/port")
  local cmd = helpers.shquote(helpers.sbot_bin) .. " run " ..
    helpers.shquote(helpers.source_dir .. "/tests/servers/image_server.lua") .. " " .. helpers.shquote(dir) ..
    (opts.no_range and " --no-range" or "")
  local proc = helpers.spawn(cmd)
  local port
  for _ = 1, 200 do
    local f = io.open(dir .. "/port", "rb")
    if f then
      port = tonumber(f:read("a"))
      f:close()
      if port then break end
    end
    os.execute("sleep 0.05")
  end
  if not port then
    local out = proc:output()
    proc:stop()
    error("image server did not start: " .. out)
  end
  local s = { port = port, proc = proc }
  function s.url(name) return string.format("http://127.0.0.1:%d/%s", port, name) end
  function s.stop() proc:stop() end
  function s.log() return proc:output() end
  return s
end

return M
