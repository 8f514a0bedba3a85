-- This gateway node's id, and the ids of its requests and settlement batches.
local hash = require "tollgate.hash"

local format = string.format
local tonumber = tonumber

local _M = {}

-- This node's id, set once in init_by_lua (start): the one a reload (HUP) kept, so the node
-- keeps the leases it holds, else a new one (new_id).
_M.id = nil

-- A new node id for the host `name`: `<name>-<the first 13 characters of a random UUID>`.
function _M.new_id(name)
    local f = io.open("/proc/sys/kernel/random/uuid", "r")
    local uuid = f and f:read("*l")
    if f then f:close() end
    return name .. "-" .. (uuid or tostring(math.random(1, 2 ^ 31))):sub(1, 13)
end

-- Sets this node's id and writes it to `node_file`: `tollgate up` returns the node's leases when
-- it stops nginx.
function _M.start(id, node_file)
    _M.id = id
    local f = io.open(node_file, "w")
    if f then
        f:write(id, "\n")
        f:close()
    end
end

-- Request ids: a random prefix per worker start and a counter, 32 hex digits like nginx's
-- $request_id (which draws 16 fresh random bytes, and a getpid(2), for every request).
local rid_prefix, rid_seq = nil, 0

local function random_hex(bytes)
    local f = assert(io.open("/dev/urandom", "rb"))
    local raw = f:read(bytes)
    f:close()
    return hash.hex(raw)
end

-- At each worker's start (init_worker_by_lua).
function _M.start_worker()
    rid_prefix = random_hex(8)
end

function _M.request_id()
    rid_seq = rid_seq + 1
    return format("%s%016x", rid_prefix, rid_seq)
end

-- A settlement batch's id (settle.lua): `<node id>:<worker pid>:<epoch seconds it opened>:<seq>`,
-- `seq` a number of the worker's own.
function _M.batch_id(seq)
    return _M.id .. ":" .. ngx.worker.pid() .. ":" .. ngx.time() .. ":" .. seq
end

-- When the batch `batch_id` opened (epoch seconds), or nil.
function _M.batch_opened(batch_id)
    return tonumber(batch_id:match(":(%d+):%d+$"))
end

return _M
