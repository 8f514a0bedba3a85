-- The usage journal: every settlement batch's records are appended to a local file, in one
-- write(2), before the batch is sent to Redis; one file per worker and hour
-- (<home>/journal/<node>-<pid>-<YYYYMMDDHH>.tsv). The control plane's worker replays records that
-- never reached Redis, or that Redis lost, by their batch id. A line: shard, batch id, then the
-- packed record (record.lua), tab-separated. No prompt or completion text is ever in it.
--
-- Until its batch is written here, a record waits in the `tollgate_journal` shared dict (one list
-- per batch), which outlives the worker: if the worker dies first, worker 0 finds the orphaned
-- list and writes it here for it (recover_orphans).
local config = require "tollgate.config"
local node = require "tollgate.node"

local ngx = ngx
local concat = table.concat

local _M = {}

local buffer = ngx.shared.tollgate_journal

-- A journal line's values are tab-separated. The buffer's lists are named by their batch's key
-- (key()), the lines' first two values: "<shard>\t<batch id>".
local SEPARATOR = "\t"
local LIST_BATCH_ID = "^%d+\t(.+)$"

local ORPHAN_SECONDS = 5 -- a live worker writes its batches within milliseconds

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
    local path = conf.journal_dir .. "/" .. node.id .. "-" .. ngx.worker.pid() .. "-"
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

-- A batch's key: its journal lines' first two values ("<shard>\t<batch id>"), and the name of
-- the shared-dict list its records wait in. Made once per batch (settle.lua keeps it).
function _M.key(shard, batch_id)
    return shard .. SEPARATOR .. batch_id
end

-- Appends the records of the batch `key` (records[1..n], packed) in one write(2): a crash never
-- leaves half a line followed by another.
local function write(key, records, n)
    local f = current_file()
    if not f then
        return
    end
    local prefix = key .. SEPARATOR
    local ok, err = f:write(prefix, concat(records, "\n" .. prefix, 1, n), "\n")
    if not ok then
        ngx.log(ngx.ERR, "failed to write usage journal: ", err)
    end
end

-- Keeps one record of an open batch where it survives this worker, until write_batch.
function _M.hold(key, packed)
    local len, err = buffer:rpush(key, packed)
    if not len then
        ngx.log(ngx.WARN, "usage journal buffer: ", err, " (the record waits for its batch's write)")
    end
end

-- Writes a batch's records to the journal file and drops their copy from the shared dict.
function _M.write_batch(key, records, n)
    write(key, records, n)
    buffer:delete(key)
end

-- Worker 0, every second: batches left in the shared dict by a worker that died (their id holds
-- the time they opened) are written to this worker's journal file.
local function recover_orphans(premature)
    if premature then
        return
    end
    local now = ngx.time()
    for _, name in ipairs(buffer:get_keys(0)) do
        local batch_id = name:match(LIST_BATCH_ID)
        local opened = batch_id and node.batch_opened(batch_id)
        if opened and now - opened >= ORPHAN_SECONDS then
            local records, n = {}, 0
            while true do
                local packed = buffer:lpop(name)
                if not packed then
                    break
                end
                n = n + 1
                records[n] = packed
            end
            if n > 0 then
                ngx.log(ngx.WARN, "journaling ", n, " usage records of batch ", batch_id,
                    " left by a worker that stopped")
                write(name, records, n)
            end
            buffer:delete(name)
        end
    end
end

function _M.start_recovery()
    local ok, err = ngx.timer.every(1, recover_orphans)
    if not ok then
        ngx.log(ngx.ERR, "failed to start usage journal recovery: ", err)
    end
end

return _M
