-- Settle a batch of finished requests and append their usage records.
-- KEYS: the shard's usage stream.
-- ARGV: shard tag, node, batch id, lease expiry ms, the batch's usage records (packed, one per
-- line: docs/internals.md), then 3 values per key: key id, account id, the key's summed cost.
-- The records become one stream entry. Idempotent by batch id.
-- Returns the key ids whose lease on this node was gone (reaped).
local tag, node = ARGV[1], ARGV[2]
if not redis.call('SET', tag .. 'batch:' .. ARGV[3], '1', 'NX', 'EX', 3600) then
  return {}
end
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[1], '*', 'r', ARGV[5])
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
for i = 6, #ARGV, 3 do
  local kid, aid, owed = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local lease_key = tag .. 'lease:' .. kid
  -- A cost is a non-negative integer (the hot path caps it at the request's hold); anything else
  -- is not applied, and the worker quarantines the records it came with.
  if owed and owed > 0 and owed == math.floor(owed) then
    local acct_key, key_key = tag .. 'acct:' .. aid, tag .. 'key:' .. kid
    if redis.call('EXISTS', acct_key) == 1 then
      redis.call('HINCRBY', acct_key, 'bal', string.format('%d', -owed))
    end
    if redis.call('EXISTS', key_key) == 1 then
      redis.call('HINCRBY', key_key, 'spent', ARGV[i + 2])
    end
    if redis.call('HEXISTS', lease_key, node) == 1 then
      -- The costs were held from this node's lease: release them, never below zero.
      local released = take(lease_key, node, owed)
      take(acct_key, 'held', released)
      take(key_key, 'held', released)
    else
      lost[#lost + 1] = kid
    end
  end
  redis.call('ZADD', tag .. 'leases', 'XX', ARGV[4], kid .. '|' .. aid .. '|' .. node)
end
return lost
