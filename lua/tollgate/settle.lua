-- Settles finished requests in batches: one script call per shard every few milliseconds per
-- worker debits the exact costs, summed per key, and appends the batch's usage records as one
-- stream entry (scripts.settle). Each batch gets its id when it opens; each record is journaled
-- under it as it joins (journal.lua), and the batch once it is applied. A batch that fails is
-- retried as it was, under that id, for as long as its worker lives; the journal's replay settles
-- it only once its worker is gone, and the batch marker makes it apply exactly once.
local config = require "tollgate.config"
local journal = require "tollgate.journal"
local lease = require "tollgate.lease"
local node = require "tollgate.node"
local redis = require "tollgate.redis"
local redis_keys = require "tollgate.redis_keys"
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
    local id = node.batch_id(seq)
    return { shard = shard, id = id, journal_key = journal.key(shard, id), records = {}, n = 0,
        costs = {}, accounts = {} }
end

-- Runs scripts.settle (redis_scripts/settle.lua) on a batch: KEYS the stream, the batch's marker,
-- the leases zset, then each key's account, key and lease hashes; ARGV the node, the renewed
-- lease expiry and the records, then each key's id, summed cost and lease member.
local function send(red, batch)
    local shard, node_id = batch.shard, node.id
    local keys = { redis_keys.usage_stream(shard), redis_keys.batch(shard, batch.id), redis_keys.leases(shard) }
    local args = { node_id, tostring(math.floor(ngx.now() * 1000) + config.get().lease_ttl_seconds * 1000),
        concat(batch.records, "\n") }
    local n = 3
    for kid, cost in pairs(batch.costs) do
        local acct = batch.accounts[kid]
        keys[n + 1], keys[n + 2], keys[n + 3] = redis_keys.account(shard, acct),
            redis_keys.key_state(shard, kid), redis_keys.lease(shard, kid)
        args[n + 1], args[n + 2], args[n + 3] = kid, format("%d", cost),
            redis_keys.lease_member(kid, acct, node_id)
        n = n + 3
    end
    for i = 1, n do
        keys[n + i] = args[i] -- the call takes KEYS then ARGV
    end
    local res, err = redis.eval(red, scripts.settle, n, unpack(keys, 1, 2 * n))
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
        if ok then
            journal.sent(batch.journal_key)
        else
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

-- Journals and queues one finished request: its key, account, cost and packed usage record
-- (record.lua).
function _M.push(shard, kid, acct, cost, packed)
    local batch = open[shard]
    if not batch then
        batch = new_batch(shard)
        open[shard] = batch
    end
    journal.record(batch.journal_key, packed)
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
    if n >= MAX_RECORDS then
        ready[#ready + 1] = batch
        open[shard] = nil
    end
    schedule(config.get().settle_interval)
end

return _M
