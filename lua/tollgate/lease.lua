-- Holds, admitted locally against leases. Each gateway node leases a slice of a key's available
-- funds from Redis and admits requests against it with atomic shared-dict arithmetic, so a busy
-- key costs no Redis round trip per request; a request that does not fit asks Redis for more
-- (exactly what it needs when funds are short, so small balances stay exact). See
-- docs/internals.md, "Leases".
local config = require "tollgate.config"
local node = require "tollgate.node"
local redis = require "tollgate.redis"
local redis_keys = require "tollgate.redis_keys"
local scripts = require "tollgate.scripts"

local ngx = ngx
local tostring = tostring

local _M = {}

local dict = ngx.shared.tollgate_leases

-- The dict's entries of a key: a prefix and the key id.
local AVAILABLE = "a:" -- nano-USD of this node's lease that no request holds
local IN_USE = "i:"    -- requests between acquire and finish
local META = "m:"      -- "<account id>|<shard>", with which maintenance returns and renews the lease
local LAST_USE = "t:"  -- when a request of the key last finished (ngx.now()), for the idle return
-- This node's id (node.lua), kept across reloads as the leases are.
local NODE = "node"

local AVAILABLE_ENTRY = "^" .. AVAILABLE .. "(.+)$" -- their key id
local META_VALUE = "^(%d+)|(%d+)$"                   -- account id, shard

local function member(kid, acct)
    return redis_keys.lease_member(kid, acct, node.id)
end

local function expiry_ms()
    return tostring(math.floor(ngx.now() * 1000) + config.get().lease_ttl_seconds * 1000)
end

local function in_use(kid)
    dict:incr(IN_USE .. kid, 1, 0)
end

-- Takes up to `amount` from the local lease, never below zero. Returns what it took (0 to
-- `amount`). A take that overdraws puts back only its own excess: the overdraw it sees may
-- include other workers' takes in flight, and putting that back too would mint funds.
local function take(kid, amount)
    local left = dict:incr(AVAILABLE .. kid, -amount, 0)
    if left >= 0 then
        return amount
    end
    local excess = -left < amount and -left or amount
    dict:incr(AVAILABLE .. kid, excess)
    return amount - excess
end

-- Places a hold of `need` nano-USD for key `kid`.
-- Returns true; or nil, reason ("balance", "key_limit", "unavailable"), available, detail.
function _M.acquire(kid, acct, shard, need)
    local got = need > 0 and take(kid, need) or 0
    if got == need then
        in_use(kid)
        return true
    end
    -- The local lease covered `got`; Redis must cover the rest.
    local missing = need - got
    local red, err = redis.connect()
    if not red then
        dict:incr(AVAILABLE .. kid, got, 0)
        return nil, "unavailable", 0, err
    end
    local res, eerr = redis.eval(red, scripts.grant, 4,
        redis_keys.account(shard, acct), redis_keys.key_state(shard, kid), redis_keys.lease(shard, kid),
        redis_keys.leases(shard), node.id, missing, config.get().lease_chunk_nano, expiry_ms(),
        member(kid, acct))
    if not res then
        red:close()
        dict:incr(AVAILABLE .. kid, got, 0)
        return nil, "unavailable", 0, eerr
    end
    redis.release(red)
    local granted, available = res[1], res[2]
    if granted <= 0 then
        dict:incr(AVAILABLE .. kid, got, 0)
        return nil, res[3] == 1 and "key_limit" or "balance", available + got
    end
    if granted ~= missing then
        dict:incr(AVAILABLE .. kid, granted - missing, 0)
    end
    dict:set(META .. kid, acct .. "|" .. shard)
    in_use(kid)
    return true
end

-- Ends a request's hold: what it did not cost returns to the local lease.
function _M.finish(kid, hold, cost)
    if hold ~= cost then
        dict:incr(AVAILABLE .. kid, hold - cost, 0)
    end
    dict:incr(IN_USE .. kid, -1, 0)
    dict:set(LAST_USE .. kid, ngx.now())
end

-- Redis lost this node's lease on `kid` (reaped after a stall): what it had locally is gone.
function _M.forget(kid)
    dict:set(AVAILABLE .. kid, 0)
end

-- This node's id: the one the dict kept across a reload (the leases it holds outlive a reload
-- too), else a new one for the host `name`, kept from now on.
function _M.node_id(name)
    local id = dict:get(NODE)
    if id then
        return id
    end
    id = node.new_id(name)
    dict:set(NODE, id)
    return id
end

local function give_back(red, kid, meta, amount)
    local acct, shard = meta:match(META_VALUE)
    return redis.eval(red, scripts.give_back, 4,
        redis_keys.account(shard, acct), redis_keys.key_state(shard, kid), redis_keys.lease(shard, kid),
        redis_keys.leases(shard), node.id, amount, member(kid, acct))
end

local last_renewal = 0

-- Worker 0, every second: return idle leases; renew live ones before they expire.
local function maintain(premature)
    if premature then
        return
    end
    local conf = config.get()
    local now = ngx.now()
    local renew = now - last_renewal >= conf.lease_ttl_seconds / 4
    local red, err = redis.connect()
    if not red then
        ngx.log(ngx.WARN, "lease maintenance skipped: ", err)
        return
    end
    local by_shard = {}
    for _, name in ipairs(dict:get_keys(0)) do
        local kid = name:match(AVAILABLE_ENTRY)
        local meta = kid and dict:get(META .. kid)
        if meta then
            local idle = now - (dict:get(LAST_USE .. kid) or 0) >= conf.lease_idle_seconds
            if idle then
                local amount = take(kid, math.max(dict:get(name) or 0, 0))
                if amount > 0 then
                    local ok, gerr = give_back(red, kid, meta, amount)
                    if not ok then
                        dict:incr(name, amount, 0)
                        ngx.log(ngx.WARN, "failed to return lease of key ", kid, ": ", gerr)
                    end
                end
                if (dict:get(IN_USE .. kid) or 0) <= 0 and (dict:get(name) or 0) == 0 then
                    dict:delete(name)
                end
            end
            if renew and dict:get(name) then
                local acct, shard = meta:match(META_VALUE)
                local list = by_shard[shard] or {}
                by_shard[shard] = list
                list[#list + 1] = member(kid, acct)
            end
        end
    end
    if renew then
        last_renewal = now
        local expiry = expiry_ms()
        for shard, members in pairs(by_shard) do
            local ok, rerr = redis.eval(red, scripts.renew, 1, redis_keys.leases(shard), expiry,
                unpack(members))
            if not ok then
                ngx.log(ngx.WARN, "failed to renew leases: ", rerr)
            end
        end
    end
    redis.release(red)
end

function _M.start_maintenance()
    local ok, err = ngx.timer.every(1, maintain)
    if not ok then
        ngx.log(ngx.ERR, "failed to start lease maintenance: ", err)
    end
end

return _M
