-- Holds, admitted locally against leases. Each gateway node leases a slice of a key's available
-- funds from Redis and admits requests against it with atomic shared-dict arithmetic, so a busy
-- key costs no Redis round trip per request; a request that does not fit asks Redis for more
-- (exactly what it needs when funds are short, so small balances stay exact). See
-- docs/internals.md, "Leases".
--
-- The lease dict (`tollgate_leases`, this module's) holds the entries named below. No write to it
-- evicts another entry (safe_set, safe_add, incr of an entry that exists): an evicted lease
-- amount would be lost. When it is full, a request of a key it has no entries for is refused
-- (acquire: "unavailable", answered 503) before any of its hold is taken; maintenance deletes
-- the entries of a key once its lease is returned, so live leases are all the dict keeps.
local config = require "tollgate.config"
local node = require "tollgate.node"
local redis = require "tollgate.redis"
local redis_keys = require "tollgate.redis_keys"
local scripts = require "tollgate.scripts"

local ngx = ngx
local tostring = tostring

local _M = {}

local dict = ngx.shared.tollgate_leases

-- A key's entries: a prefix and the key id.
local AVAILABLE = "a:" -- nano-USD of this node's lease that no request holds
local IN_USE = "i:"    -- requests between acquire and finish: their key's entries stay
local META = "m:"      -- "<account id>|<shard>", with which maintenance returns and renews the lease
local LAST_USE = "t:"  -- when a request of the key last finished (ngx.now()), for the idle return
-- This node's id (node.lua), kept across reloads as the leases are.
local NODE = "node"

local AVAILABLE_ENTRY = "^" .. AVAILABLE .. "(.+)$" -- their key id
local IN_USE_ENTRY = "^" .. IN_USE .. "(.+)$"
local META_VALUE = "^(%d+)|(%d+)$"                   -- account id, shard

local function member(kid, acct)
    return redis_keys.lease_member(kid, acct, node.id)
end

local function expiry_ms()
    return tostring(math.floor(ngx.now() * 1000) + config.get().lease_ttl_seconds * 1000)
end

local function refused(err)
    return "the lease dict tollgate_leases refused an entry: " .. tostring(err)
end

-- Adds `n` to the number entry `name` and returns the sum, creating the entry when there is none
-- (never by evicting another); nil and an error ("no memory": the dict is full) otherwise.
local function add(name, n)
    local sum, err = dict:incr(name, n)
    if sum or err ~= "not found" then
        return sum, err
    end
    local ok
    ok, err = dict:safe_add(name, n)
    if ok then
        return n
    end
    if err == "exists" then -- another worker made it meanwhile
        return dict:incr(name, n)
    end
    return nil, err
end

-- Puts `amount` back into the local lease `available`. Should the dict refuse, the amount stays
-- held in this node's lease in Redis until that lease is returned or expires.
local function credit(available, amount)
    local sum, err = add(available, amount)
    if not sum then
        ngx.log(ngx.ERR, refused(err), "; ", amount, " nano-USD of ", available,
            " stay held in Redis until the lease is returned or expires")
    end
end

-- One request fewer in flight. The entry is gone only when maintenance deleted the key's entries.
local function done(in_use)
    local n, err = dict:incr(in_use, -1)
    if not n and err ~= "not found" then
        ngx.log(ngx.ERR, "lease dict: ", in_use, ": ", err)
    end
end

-- Takes up to `amount` from the local lease `available`, never below zero. Returns what it took
-- (0 to `amount`; 0 when there is no lease here), or nil and an error. A take that overdraws puts
-- back only its own excess: the overdraw it sees may include other workers' takes in flight, and
-- putting that back too would mint funds.
local function take(available, amount)
    local left, err = dict:incr(available, -amount)
    if not left then
        if err == "not found" then
            return 0
        end
        return nil, err
    end
    if left >= 0 then
        return amount
    end
    local excess = -left < amount and -left or amount
    local _, perr = dict:incr(available, excess)
    if perr and perr ~= "not found" then -- not found: maintenance deleted the drained entry
        ngx.log(ngx.ERR, "lease dict: ", available, ": ", perr)
    end
    return amount - excess
end

-- A hold not placed: what was taken for it returns to the local lease, and the request is no
-- longer in flight.
local function undo(available, got, in_use)
    if got > 0 then
        credit(available, got)
    end
    done(in_use)
end

-- Places a hold of `need` nano-USD for key `kid`.
-- Returns true; or nil, reason ("balance", "key_limit", "unavailable"), available, detail.
function _M.acquire(kid, acct, shard, need)
    local in_use = IN_USE .. kid
    local flying, ierr = add(in_use, 1)
    if not flying then
        return nil, "unavailable", 0, refused(ierr)
    end
    local available = AVAILABLE .. kid
    local got = 0
    if need > 0 then
        local terr
        got, terr = take(available, need)
        if not got then
            done(in_use)
            return nil, "unavailable", 0, refused(terr)
        end
    end
    if got == need then
        return true
    end
    -- The local lease covered `got`; Redis must cover the rest. The key's entries are made first,
    -- so a full dict refuses before Redis grants anything.
    local missing = need - got
    local ok, err = dict:safe_set(META .. kid, acct .. "|" .. shard)
    if ok then
        ok, err = add(available, 0)
    end
    if not ok then
        undo(available, got, in_use)
        return nil, "unavailable", 0, refused(err)
    end
    local red
    red, err = redis.connect()
    if not red then
        undo(available, got, in_use)
        return nil, "unavailable", 0, err
    end
    local account = redis_keys.account(shard, acct)
    local res, eerr = redis.eval(red, scripts.grant, 4,
        account, redis_keys.key_state(shard, kid), redis_keys.lease(shard, kid),
        redis_keys.leases(shard), node.id, missing, config.get().lease_chunk_nano, expiry_ms(),
        member(kid, acct))
    if not res then
        red:close()
        undo(available, got, in_use)
        return nil, "unavailable", 0, eerr
    end
    local granted, avail = res[1], res[2]
    if granted > 0 then
        redis.replicate(red, account)
    end
    redis.release(red)
    if granted <= 0 then
        undo(available, got, in_use)
        return nil, res[3] == 1 and "key_limit" or "balance", avail + got
    end
    if granted ~= missing then
        credit(available, granted - missing)
    end
    return true
end

-- Ends a request's hold: what it did not cost returns to the local lease.
function _M.finish(kid, hold, cost)
    if hold ~= cost then
        credit(AVAILABLE .. kid, hold - cost)
    end
    done(IN_USE .. kid)
    local ok, err = dict:safe_set(LAST_USE .. kid, ngx.now())
    if not ok then
        ngx.log(ngx.WARN, refused(err), "; the lease of key ", kid, " may be returned before it is idle")
    end
end

-- Redis lost this node's lease on `kid` (reaped after a stall): what it had locally is gone.
function _M.forget(kid)
    local ok, err = dict:replace(AVAILABLE .. kid, 0)
    if not ok and err ~= "not found" then
        ngx.log(ngx.ERR, "lease dict: failed to forget the lease of key ", kid, ": ", err)
    end
end

-- This node's id: the one the dict kept across a reload (the leases it holds outlive a reload
-- too), else a new one for the host `name`, kept from now on.
function _M.node_id(name)
    local id = dict:get(NODE)
    if id then
        return id
    end
    id = node.new_id(name)
    local ok, err = dict:safe_set(NODE, id)
    if not ok then
        error(refused(err) .. ": the node id")
    end
    return id
end

local function give_back(red, kid, meta, amount)
    local acct, shard = meta:match(META_VALUE)
    return redis.eval(red, scripts.give_back, 4,
        redis_keys.account(shard, acct), redis_keys.key_state(shard, kid), redis_keys.lease(shard, kid),
        redis_keys.leases(shard), node.id, amount, member(kid, acct))
end

-- Deletes a key's entries. The account goes first: a request that makes the lease again
-- meanwhile sets it again after.
local function delete_entries(kid)
    dict:delete(META .. kid)
    dict:delete(LAST_USE .. kid)
    dict:delete(AVAILABLE .. kid)
    dict:delete(IN_USE .. kid)
end

-- Whether no request of the key is in flight and its local lease is empty (or gone).
local function unused(kid)
    return (dict:get(IN_USE .. kid) or 0) <= 0 and (dict:get(AVAILABLE .. kid) or 0) == 0
end

local last_renewal = 0

-- Worker 0, every second: return idle leases; renew live ones before they expire; delete the
-- entries of keys that hold nothing here and have no request in flight.
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
        local idle = kid and now - (dict:get(LAST_USE .. kid) or 0) >= conf.lease_idle_seconds
        local meta = kid and dict:get(META .. kid)
        if meta then
            if idle then
                local amount = take(name, math.max(dict:get(name) or 0, 0))
                if amount and amount > 0 then
                    local ok, gerr = give_back(red, kid, meta, amount)
                    if not ok then
                        credit(name, amount)
                        ngx.log(ngx.WARN, "failed to return lease of key ", kid, ": ", gerr)
                    end
                end
                if unused(kid) then
                    delete_entries(kid)
                end
            end
            if renew and dict:get(name) then
                local acct, shard = meta:match(META_VALUE)
                local list = by_shard[shard] or {}
                by_shard[shard] = list
                list[#list + 1] = member(kid, acct)
            end
        elseif kid then
            -- A lease amount without its account (deleted while a request made the lease again):
            -- maintenance can neither renew nor return it, so Redis's expiry returns it (the
            -- reaper); until then it is not spent here.
            local amount = take(name, math.max(dict:get(name) or 0, 0))
            if amount and amount > 0 then
                ngx.log(ngx.WARN, "the lease of key ", kid, " lost its account here: its ", amount,
                    " nano-USD return to the key when the lease expires")
            end
            if unused(kid) then
                delete_entries(kid)
            end
        else
            kid = name:match(IN_USE_ENTRY) -- a key without a lease here (free requests, refusals)
            if kid and not dict:get(AVAILABLE .. kid) and unused(kid)
                    and now - (dict:get(LAST_USE .. kid) or 0) >= conf.lease_idle_seconds then
                delete_entries(kid)
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
