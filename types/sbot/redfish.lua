---@meta sbot.redfish
-- LuaCATS type definitions of sbot.redfish (engine/redfish.c): a Redfish client for
-- BMCs (iDRAC 8/9): sessions, links followed verbatim, retries, jobs.
-- Reference: docs/redfish.md. Failures are `nil, message, code[, status]`
-- with code a transport word, the device's MessageId, or the HTTP status (an
-- integer) of an error answer without one; "invalid" for a link to another host.

---@class sbot.redfish.ConnectOptions
---@field host string name-or-ip[:port] of the BMC (the site's idrac.host; IPv6 as [addr]:port); HTTPS
---@field user? string default "root"
---@field password string|sbot.secret
---@field tls? sbot.tls.Options
---@field per_host? integer requests in flight in get_many, 1..16 (default 2)
---@field timeout? number seconds for one request (default 60)
---@field connect_timeout? number default 10
---@field login_timeout? number default max(90, timeout)
---@field not_ready_wait? number seconds 503 SYS518 answers are waited out (default 300)
---@field close_timeout? number seconds for the session DELETE (default 15)
---@field retries? {max?: integer, base?: number, cap?: number}|false
---@field auth? "auto"|"session"|"basic"

---@class sbot.redfish.Result
---@field status integer
---@field location? string
---@field job_id? string
---@field body? any the decoded answer (or its text)

---@class sbot.redfish.JobView
---@field id string
---@field state string JobState or the task's state
---@field percent? integer
---@field message? string

---A logged-in client (a to-be-closed value: the session is deleted).
---@class sbot.redfish.client
---@field host string
---@field base string "https://host"
---@field auth "session"|"basic"
---@field session? string the session's path
---@field root table the service root document
---@field open boolean
local Client = {}
---@param path string an @odata.id, used verbatim
---@return table|nil doc
---@return {status: integer, etag?: string, location?: string}|string meta_or_err
---@return string|integer|nil code
---@return integer? status
function Client:get(path) end
---Concurrent GETs (at most per_host in flight).
---@param paths string[]
---@return {doc?: table, etag?: string, status?: integer, error?: string, code?: string|integer}[]
function Client:get_many(paths) end
---@param path string
---@param body table
---@param opts? {etag?: string}
---@return sbot.redfish.Result|nil result
---@return string? err
---@return string|integer|nil code
---@return integer? status
function Client:patch(path, body, opts) end
---@param path string
---@param body? table default {}
---@return sbot.redfish.Result|nil result
---@return string? err
---@return string|integer|nil code
---@return integer? status
function Client:post(path, body) end
---@param path string
---@return sbot.redfish.Result|nil result
---@return string? err
---@return string|integer|nil code
---@return integer? status
function Client:delete(path) end
---Poll a job (a path or a job id) until it ends; without opts.progress it is a wait of sbot.progress.
---@param job string
---@param opts? {timeout?: number, interval?: number, progress?: fun(view: sbot.redfish.JobView)}
---@return table|nil doc the job document when Completed
---@return string? err
---@return string|integer|nil code the job's MessageId (else its JobState/TaskState), "not_found", "timeout", or a failed read's code
---@return table? doc
function Client:wait_job(job, opts) end
---@param manager_doc? table the BMC's Manager document, when already read
---@return {vendor: string, product: string, redfish_version: string, manager: string, manager_model: string, firmware: string, generation: integer, family: string}|nil info
---@return string? err
---@return string|integer|nil code
---@return integer? status
function Client:identify(manager_doc) end
---Delete the session (idempotent).
---@return true|nil ok
---@return string? err
function Client:close() end
---@return {requests: integer, retries: integer, reauths: integer, logins: integer}
function Client:stats() end

local redfish = {}

---@param opts sbot.redfish.ConnectOptions
---@return sbot.redfish.client|nil client
---@return string? err
---@return string|integer|nil code
---@return integer? status
function redfish.connect(opts) end
---Decode JSON as Redfish documents (arrays keep their [] form).
---@param text string
---@return any|nil value
---@return string? err
function redfish.decode(text) end
---@param value any
---@return string text
function redfish.encode(value) end
---Check a value against a BIOS attribute registry entry.
---@param entry table the registry's attribute entry
---@param value any
---@return string|nil reason nil when the value is allowed
function redfish.check_attribute(entry, value) end

return redfish
