---@meta sbot.fsio
-- LuaCATS type definitions of sbot.fsio (engine/fsio.c): file primitives. Failures are
-- `nil, "what: path: reason", ERRNO_NAME`. Reference: docs/fsio.md.

---@class sbot.fsio.Stat
---@field type "file"|"directory"|"link"|"other"
---@field size integer
---@field mtime integer
---@field mode integer permission bits
---@field uid integer

local fsio = {}

---@param path string
---@param follow? boolean follow a symbolic link
---@return sbot.fsio.Stat|nil st
---@return string? err
---@return string? code
function fsio.stat(path, follow) end
---@param dir string
---@return {name: string, type: string}[]|nil entries
---@return string? err
---@return string? code
function fsio.list(dir) end
---@param path string
---@param mode? string default "0755"
---@return true|nil ok
---@return string? err
---@return string? code
function fsio.mkdirs(path, mode) end
---@param path string a file or an empty directory
---@return true|nil ok
---@return string? err
---@return string? code
function fsio.remove(path) end
---@param path string
---@return string|nil path absolute, canonical
---@return string? err
---@return string? code
function fsio.realpath(path) end
---Write atomically (temp file, fsync, rename, fsync of the directory).
---@param path string
---@param source string|{file: string} content, or a file streamed
---@param opts? {mode?: string} the file's exact mode, set before any data goes in
---@return {size: integer, sha256: string}|nil result
---@return string? err
---@return string? code
function fsio.write_atomic(path, source, opts) end

return fsio
