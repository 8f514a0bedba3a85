-- The usage journal: every finished request's record is appended to a local file, in one
-- write(2) of one whole line, the moment it joins its settlement batch (settle.push), before the
-- batch is sent to Redis; one file per worker and hour (<home>/journal/<node>-<pid>-<YYYYMMDDHH>.tsv).
-- The control plane replays (control_plane/billing/journal_replay.py), by their batch id, the
-- records of batches their worker can no longer send or that Redis lost. No prompt or completion
-- text is ever in it. Lines, tab-separated (docs/internals.md, "Usage journal"):
--   <shard> <batch id> <packed record (record.lua)>   one per record of the batch
--   <shard> <batch id> <epoch ms>                     the batch was applied in Redis (sent)
-- Each worker holds an exclusive flock(2) on <node>-<pid>.lock while it lives: the kernel drops
-- it when the worker dies, however it dies, which tells the replay that the worker's unsent
-- batches will never be sent.
local config = require "tollgate.config"
local node = require "tollgate.node"

local ffi = require "ffi"
local bit = require "bit"

local ngx = ngx
local C = ffi.C
local floor = math.floor
local format = string.format

ffi.cdef [[
int open(const char *pathname, int flags, int mode);
long write(int fd, const void *buf, size_t count);
int close(int fd);
int flock(int fd, int operation);
char *strerror(int errnum);
]]

local _M = {}

-- Linux's open(2) and flock(2) flags.
local O_WRONLY, O_CREAT, O_APPEND, O_CLOEXEC = 0x1, 0x40, 0x400, 0x80000
local APPEND_FLAGS = bit.bor(O_WRONLY, O_CREAT, O_APPEND, O_CLOEXEC)
local LOCK_FLAGS = bit.bor(O_WRONLY, O_CREAT, O_CLOEXEC)
local LOCK_EX, LOCK_NB = 2, 4
local MODE = 420 -- 0644

-- A journal line's values are tab-separated; a batch's lines start with its key (key()).
local SEPARATOR = "\t"

local fd, fd_hour = -1, nil

local function failure()
    return ffi.string(C.strerror(ffi.errno()))
end

-- This worker's file for the current hour, opened when the hour changes (the previous one closed).
local function current_fd()
    local hour = floor(ngx.time() / 3600) -- hours since the epoch: no date formatting per line
    if fd_hour == hour then
        return fd
    end
    if fd >= 0 then
        C.close(fd)
    end
    local path = config.get().journal_dir .. "/" .. node.id .. "-" .. ngx.worker.pid() .. "-"
        .. os.date("!%Y%m%d%H", hour * 3600) .. ".tsv"
    fd = C.open(path, APPEND_FLAGS, MODE)
    if fd < 0 then
        ngx.log(ngx.ERR, "failed to open usage journal ", path, ": ", failure())
        fd_hour = nil
        return fd
    end
    fd_hour = hour
    return fd
end

-- Appends one whole line in one write(2) to a file opened O_APPEND: a crash never leaves half a
-- line followed by another.
local function append(line)
    local f = current_fd()
    if f < 0 then
        return
    end
    local n = #line
    local written = C.write(f, line, n)
    if written ~= n then
        ngx.log(ngx.ERR, "failed to write usage journal: ",
            written < 0 and failure() or ("wrote " .. tonumber(written) .. " of " .. n .. " bytes"))
    end
end

-- At each worker's start (init_worker_by_lua): takes the flock this worker holds until it dies.
-- The descriptor is never closed, as closing it would drop the lock.
function _M.start_worker()
    local path = config.get().journal_dir .. "/" .. node.id .. "-" .. ngx.worker.pid() .. ".lock"
    local lock = C.open(path, LOCK_FLAGS, MODE)
    if lock < 0 or C.flock(lock, bit.bor(LOCK_EX, LOCK_NB)) ~= 0 then
        ngx.log(ngx.ERR, "failed to lock ", path, ": ", failure(),
            " (the journal replay will take this worker's open batches for a dead worker's)")
    end
end

-- A batch's key: its journal lines' first two values ("<shard>\t<batch id>"). Made once per
-- batch (settle.lua keeps it).
function _M.key(shard, batch_id)
    return shard .. SEPARATOR .. batch_id
end

-- Journals one record (packed) of the batch `key`: done before the record is queued.
function _M.record(key, packed)
    append(key .. SEPARATOR .. packed .. "\n")
end

-- Journals that the batch `key` was applied in Redis: the replay leaves it to the batch marker.
function _M.sent(key)
    append(format("%s\t%d\n", key, floor(ngx.now() * 1000)))
end

return _M
