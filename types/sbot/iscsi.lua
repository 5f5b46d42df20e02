---@meta sbot.iscsi
-- LuaCATS type definitions of sbot.iscsi (engine/iscsi.c): an iSCSI login check on
-- libiscsi. Reference: docs/iscsi.md.

---@class sbot.iscsi.ProbeOptions
---@field portal string "HOST:PORT" (IPv6 as "[addr]:port"; anything else raises)
---@field target string the target's IQN
---@field lun? integer 0..16383 (default 0)
---@field initiator? string sent at login (default "iqn.2024-01.org.sbot:probe")
---@field chap? {user: string, secret: string|sbot.secret}
---@field timeout? number seconds for the whole exchange (default 15)

---@class sbot.iscsi.ProbeResult
---@field portal string
---@field target string
---@field lun integer
---@field inquiry {vendor: string, product: string, revision: string, device_type: integer}
---@field capacity {blocks: integer, block_size: integer, bytes: integer}

local iscsi = {}

---Log in, INQUIRY, READ CAPACITY, log out.
---@param opts sbot.iscsi.ProbeOptions
---@return sbot.iscsi.ProbeResult|nil result
---@return string? err
---@return string? code a transport word ("connect", "closed", "timeout", "resolve", "io", "protocol"), the target's login status ("TARGET_NOT_FOUND", "AUTHENTICATION_FAILURE", ...), "LOGICAL_UNIT_NOT_SUPPORTED", a SCSI sense key or status ("NOT_READY", "BUSY", ...) or "ENOMEM" (docs/iscsi.md)
function iscsi.probe(opts) end

return iscsi
