-- The usage journal: every usage record is appended to a local file before it is queued for
-- settlement, one file per worker and hour (<home>/journal/<node>-<pid>-<YYYYMMDDHH>.tsv).
-- The control plane's worker replays records that never reached Redis, or that Redis lost, by
-- their batch id. A line: shard, batch id, then the packed record (settle.FIELDS order),
-- tab-separated. No prompt or completion text is ever in it.
local config = require "tollgate.config"
local lease = require "tollgate.lease"

local ngx = ngx

local _M = {}

local file, file_hour

local function current_file()
    local hour = math.floor(ngx.time() / 3600) -- hours since the epoch: no date formatting per line
    if file and file_hour == hour then
        return file
    end
    if file then
        file:close()
    end
    local conf = config.get()
    local path = conf.journal_dir .. "/" .. lease.node .. "-" .. ngx.worker.pid() .. "-"
        .. os.date("!%Y%m%d%H", hour * 3600) .. ".tsv"
    local f, err = io.open(path, "a")
    if not f then
        ngx.log(ngx.ERR, "failed to open usage journal ", path, ": ", err)
        file = nil
        return nil
    end
    f:setvbuf("no")
    file, file_hour = f, hour
    return f
end

function _M.append(shard, batch_id, packed)
    local f = current_file()
    if not f then
        return
    end
    -- One write(2) per line (the file is unbuffered), so a crash never leaves half a line
    -- followed by another.
    local ok, err = f:write(shard .. "\t" .. batch_id .. "\t" .. packed .. "\n")
    if not ok then
        ngx.log(ngx.ERR, "failed to write usage journal: ", err)
    end
end

return _M
