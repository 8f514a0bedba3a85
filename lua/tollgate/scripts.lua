-- The Redis scripts of the hot path, run by SHA. Every key a script touches is passed in KEYS
-- (redis_keys.lua names them), none made inside a script, and all of a call's keys share the
-- account's shard tag (docs/internals.md), so each stays atomic on Redis Cluster.
local hash = require "tollgate.hash"

local _M = {}

local function script(src)
    return { src = src, sha = hash.sha1_hex(src) }
end

local SCRIPT_DIR = debug.getinfo(1, "S").source:sub(2):match("^(.*/)") .. "redis_scripts/"

-- A script kept in its own file because the control plane runs it too.
local function read_script(name)
    local f = assert(io.open(SCRIPT_DIR .. name, "r"))
    local src = f:read("*a")
    f:close()
    return src
end

-- Lease funds for a key to this node.
-- KEYS: account, key state, lease, leases zset.
-- ARGV: node, need, want, expiry ms, lease member.
-- Returns {granted, available, limited_by_key}: granted 0 when `need` is not available,
-- -1 when the account is unknown to Redis.
_M.grant = script [[
local acct = redis.call('HMGET', KEYS[1], 'bal', 'held')
if not acct[1] then
  return {-1, 0, 0}
end
local avail = tonumber(acct[1]) - tonumber(acct[2] or 0)
local by_key = 0
local key = redis.call('HMGET', KEYS[2], 'limit', 'spent', 'held')
if key[1] then
  local kavail = tonumber(key[1]) - tonumber(key[2] or 0) - tonumber(key[3] or 0)
  if kavail < avail then
    avail = kavail
    by_key = 1
  end
end
local need = tonumber(ARGV[2])
if not need or need < 0 or need ~= math.floor(need) then
  return redis.error_reply('a lease is a non-negative integer amount')
end
if avail < need then
  return {0, avail, by_key}
end
local grant = math.floor(avail / 4)
local want = tonumber(ARGV[3])
if grant > want then grant = want end
if grant < need then grant = need end
redis.call('HINCRBY', KEYS[1], 'held', grant)
redis.call('HINCRBY', KEYS[2], 'held', grant)
redis.call('HINCRBY', KEYS[3], ARGV[1], grant)
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
return {grant, avail, by_key}
]]

-- Give back part of a lease.
-- KEYS: account, key state, lease, leases zset. ARGV: node, amount, lease member.
-- Deletes the lease when nothing is left on it. Refuses (returns 0) an amount that is negative
-- or more than the lease holds: `held` never goes below zero.
_M.give_back = script [[
local leased = tonumber(redis.call('HGET', KEYS[3], ARGV[1]))
local amount = tonumber(ARGV[2])
if not leased or not amount or amount < 0 or amount > leased then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'held', -amount)
redis.call('HINCRBY', KEYS[2], 'held', -amount)
local left = redis.call('HINCRBY', KEYS[3], ARGV[1], -amount)
if left == 0 then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[3])
end
return 1
]]

-- Renew this node's leases. KEYS: leases zset. ARGV: expiry ms, members...
_M.renew = script [[
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
end
return #ARGV - 1
]]

-- Settle a batch of finished requests (the usage journal's replay runs the same script, from
-- control_plane/billing/journal_replay.py).
_M.settle = script(read_script("settle.lua"))

-- Rate limits, requests and tokens per minute, as two GCRA buckets (a token bucket of one
-- minute's capacity that refills continuously). Exact across workers and nodes: one atomic
-- check-and-take in Redis.
-- KEYS: the key's limiter hash. ARGV: now ms, rpm (0 = none), tpm (0 = none), tokens.
-- Returns {allowed (1/0), retry_after ms, rq_remaining, rq_reset ms, tk_remaining, tk_reset ms}.
_M.rate_limit = script [[
local now = tonumber(ARGV[1])
local window = 60000
-- Returns allowed, ms to wait, then remaining and reset (ms) before and after taking, new TAT.
local function check(field, per_minute, weight)
  if per_minute <= 0 then return true, 0, -1, 0, -1, 0, nil end
  local interval = window / per_minute
  local tat = tonumber(redis.call('HGET', KEYS[1], field) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval * weight
  local left_before = math.floor((window - (tat - now)) / interval)
  local left_after = math.floor((window - (new_tat - now)) / interval)
  local allow_at = new_tat - window
  return allow_at <= now, math.max(0, math.ceil(allow_at - now)), left_before, math.ceil(tat - now),
    left_after, math.ceil(new_tat - now), new_tat
end
local rq_ok, rq_wait, rq_left0, rq_reset0, rq_left, rq_reset, rq_tat = check('rq', tonumber(ARGV[2]), 1)
local tk_ok, tk_wait, tk_left0, tk_reset0, tk_left, tk_reset, tk_tat = check('tk', tonumber(ARGV[3]), tonumber(ARGV[4]))
if not (rq_ok and tk_ok) then
  return {0, math.max(rq_wait, tk_wait), rq_left0, rq_reset0, tk_left0, tk_reset0}
end
if rq_tat then redis.call('HSET', KEYS[1], 'rq', rq_tat) end
if tk_tat then redis.call('HSET', KEYS[1], 'tk', tk_tat) end
redis.call('PEXPIRE', KEYS[1], window * 2)
return {1, 0, rq_left, rq_reset, tk_left, tk_reset}
]]

return _M
