-- Settles finished requests in batches: one script call per shard every few milliseconds per
-- worker debits the exact costs, summed per key, and appends the batch's usage records as one
-- stream entry (scripts.settle). Each batch gets its id when it opens; its records wait in the
-- journal's shared dict while it fills and are journaled with it (journal.lua), in one write,
-- before it is first sent; a batch that fails is retried as it was, under that id, so it applies
-- exactly once whether this worker's retry or the journal's replay gets there first.
local config = require "tollgate.config"
local journal = require "tollgate.journal"
local keys = require "tollgate.keys"
local lease = require "tollgate.lease"
local redis = require "tollgate.redis"
local scripts = require "tollgate.scripts"

local ngx = ngx
local timer_at = ngx.timer.at
local concat = table.concat
local format = string.format
local pairs = pairs

local _M = {}

local MAX_RECORDS = 200
local RETRY_SECONDS = 1

local open = {}          -- shard -> batch being filled (new_batch)
local ready = {}         -- closed batches, and failed ones waiting for a retry
local scheduled = false
local seq = 0

local function new_batch(shard)
    seq = seq + 1
    local id = lease.node .. ":" .. ngx.worker.pid() .. ":" .. ngx.time() .. ":" .. seq
    return { shard = shard, id = id, journal_key = journal.key(shard, id), records = {}, n = 0,
        costs = {}, accounts = {} }
end

local function send(red, batch)
    local args, n = {}, 0
    for kid, cost in pairs(batch.costs) do
        args[n + 1], args[n + 2], args[n + 3] = kid, batch.accounts[kid], format("%d", cost)
        n = n + 3
    end
    local res, err = redis.eval(red, scripts.settle, 1, keys.usage_stream(batch.shard),
        keys.tag(batch.shard), lease.node, batch.id,
        tostring(math.floor(ngx.now() * 1000) + config.get().lease_ttl_seconds * 1000),
        concat(batch.records, "\n"), unpack(args, 1, n))
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
    for _, batch in ipairs(batches) do
        if not batch.journaled then
            journal.write_batch(batch.journal_key, batch.records, batch.n)
            batch.journaled = true
        end
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

-- Holds and queues one finished request: its key, account, cost and packed usage record
-- (the values of control_plane/usage_records.py RECORD_FIELDS in order, tab-separated).
function _M.push(shard, kid, acct, cost, packed)
    local batch = open[shard]
    if not batch then
        batch = new_batch(shard)
        open[shard] = batch
    end
    local n = batch.n + 1
    batch.n = n
    batch.records[n] = packed
    local costs = batch.costs
    local sum = costs[kid]
    if sum then
        costs[kid] = sum + cost
    else
        costs[kid] = cost
        batch.accounts[kid] = acct
    end
    journal.hold(batch.journal_key, packed)
    if n >= MAX_RECORDS then
        ready[#ready + 1] = batch
        open[shard] = nil
    end
    schedule(config.get().settle_interval)
end

return _M
