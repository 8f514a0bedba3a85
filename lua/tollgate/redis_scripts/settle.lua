-- Settle a batch of finished requests and append their usage records.
-- KEYS: the shard's usage stream, the batch's marker, the leases zset, then 3 per key: its
-- account hash, key hash and lease hash (KEYS[i], KEYS[i + 1], KEYS[i + 2] for i = 4, 7, ...).
-- ARGV: node, lease expiry ms, the batch's usage records (packed, one per line: docs/internals.md),
-- then 3 per key, at the same i as its keys: key id, the key's summed cost, its lease member.
-- The records become one stream entry. Idempotent by the batch's marker.
-- Returns the key ids whose lease on this node was gone (reaped).
local node = ARGV[1]
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', 3600) then
  return {}
end
if ARGV[3] ~= '' then
  redis.call('XADD', KEYS[1], '*', 'r', ARGV[3])
end
local lost = {}
-- Decrements a hash field by at most what it holds; returns what it took. (Integers go to
-- Redis formatted with %d: a Lua number could be sent in exponent form.)
local function take(key, field, amount)
  local have = tonumber(redis.call('HGET', key, field) or '0')
  if amount > have then amount = math.max(have, 0) end
  if amount > 0 then redis.call('HINCRBY', key, field, string.format('%d', -amount)) end
  return amount
end
for i = 4, #KEYS, 3 do
  local acct_key, key_key, lease_key = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  local owed = tonumber(ARGV[i + 1])
  -- A cost is a non-negative integer (the hot path caps it at the request's hold); anything else
  -- is not applied, and the worker quarantines the records it came with.
  if owed and owed > 0 and owed == math.floor(owed) then
    if redis.call('EXISTS', acct_key) == 1 then
      redis.call('HINCRBY', acct_key, 'bal', string.format('%d', -owed))
    end
    if redis.call('EXISTS', key_key) == 1 then
      redis.call('HINCRBY', key_key, 'spent', ARGV[i + 1])
    end
    if redis.call('HEXISTS', lease_key, node) == 1 then
      -- The costs were held from this node's lease: release them, never below zero.
      local released = take(lease_key, node, owed)
      take(acct_key, 'held', released)
      take(key_key, 'held', released)
    else
      lost[#lost + 1] = ARGV[i]
    end
  end
  redis.call('ZADD', KEYS[3], 'XX', ARGV[2], ARGV[i + 2])
end
return lost
