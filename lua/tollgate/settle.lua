-- Settles finished requests in batches: one script call per shard every few milliseconds per
-- worker debits the exact costs and appends the usage records (scripts.settle). Each batch gets
-- its id when it opens, and every record is journaled with it (journal.lua) before it is queued;
-- a batch that fails is retried as it was, under that id, so it applies exactly once whether
-- this worker's retry or the journal's replay gets there first.
local config = require "tollgate.config"
local journal = require "tollgate.journal"
local keys = require "tollgate.keys"
local lease = require "tollgate.lease"
local redis = require "tollgate.redis"
local scripts = require "tollgate.scripts"

local ngx = ngx
local timer_at = ngx.timer.at
local concat = table.concat

local _M = {}

-- Usage record fields, in the order they are packed (tab-separated) into the stream entry's
-- one field `r` and the journal (docs/internals.md; control_plane/usage_records.py).
_M.FIELDS = {
    "rid", "ts", "acct", "key", "model", "umodel", "provider", "pv", "ep", "stream", "status",
    "basis", "in", "cr", "cw", "cw1h", "out", "rsn", "cost", "ms", "ttfb", "node",
}
local FIELDS = _M.FIELDS
local NF = #FIELDS
local MAX_RECORDS = 200
local RETRY_SECONDS = 1

local open = {}          -- shard -> batch being filled: {shard =, id =, values =, n =}
local ready = {}         -- closed batches, and failed ones waiting for a retry
local scheduled = false
local seq = 0

local function new_batch(shard)
    seq = seq + 1
    return { shard = shard, id = lease.node .. ":" .. ngx.worker.pid() .. ":" .. ngx.time() .. ":" .. seq,
        values = {}, n = 0 }
end

local function send(red, batch)
    local res, err = redis.eval(red, scripts.settle, 1, keys.usage_stream(batch.shard),
        keys.tag(batch.shard), lease.node, batch.id,
        tostring(math.floor(ngx.now() * 1000) + config.get().lease_ttl_seconds * 1000),
        unpack(batch.values))
    if not res then
        return nil, err
    end
    for i = 1, #res do
        lease.forget(res[i])
    end
    return true
end

local schedule

local function flush(premature)
    scheduled = false
    local batches = ready
    ready = {}
    for shard, batch in pairs(open) do
        batches[#batches + 1] = batch
        open[shard] = nil
    end
    if #batches == 0 then
        return
    end
    local red, err = redis.connect()
    for _, batch in ipairs(batches) do
        local ok, serr
        if red then
            ok, serr = send(red, batch)
            if not ok then
                red:close()
                red, err = redis.connect()
            end
        else
            serr = err
        end
        if not ok then
            ready[#ready + 1] = batch
            ngx.log(ngx.ERR, "failed to settle batch ", batch.id, " (", batch.n,
                " records), will retry: ", serr)
        end
    end
    if red then
        redis.release(red)
    end
    if #ready > 0 and not premature then
        schedule(RETRY_SECONDS)
    end
end

schedule = function(delay)
    if scheduled then
        return
    end
    local ok, err = timer_at(delay, flush)
    if ok then
        scheduled = true
    else
        ngx.log(ngx.ERR, "failed to schedule settlement: ", err)
    end
end

-- Journals and queues one finished request; `record` holds the FIELDS by name.
function _M.push(shard, record)
    local batch = open[shard]
    if not batch then
        batch = new_batch(shard)
        open[shard] = batch
    end
    local packed = {}
    for i = 1, NF do
        packed[i] = record[FIELDS[i]]
    end
    packed = concat(packed, "\t")
    local values, n = batch.values, #batch.values
    values[n + 1], values[n + 2], values[n + 3], values[n + 4] = record.key, record.acct, record.cost, packed
    batch.n = batch.n + 1
    journal.append(shard, batch.id, packed)
    if batch.n >= MAX_RECORDS then
        ready[#ready + 1] = batch
        open[shard] = nil
    end
    schedule(config.get().settle_interval)
end

return _M
