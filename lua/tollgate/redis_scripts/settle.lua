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
for i = 6, #ARGV, 3 do
  local kid, aid, cost = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local lease_key = tag .. 'lease:' .. kid
  if cost > 0 then
    local acct_key, key_key = tag .. 'acct:' .. aid, tag .. 'key:' .. kid
    local owed = ARGV[i + 2]
    if redis.call('EXISTS', acct_key) == 1 then
      redis.call('HINCRBY', acct_key, 'bal', '-' .. owed)
    end
    if redis.call('EXISTS', key_key) == 1 then
      redis.call('HINCRBY', key_key, 'spent', owed)
    end
    if redis.call('HEXISTS', lease_key, node) == 1 then
      redis.call('HINCRBY', acct_key, 'held', '-' .. owed)
      redis.call('HINCRBY', key_key, 'held', '-' .. owed)
      redis.call('HINCRBY', lease_key, node, '-' .. owed)
    else
      lost[#lost + 1] = kid
    end
  end
  redis.call('ZADD', tag .. 'leases', 'XX', ARGV[4], kid .. '|' .. aid .. '|' .. node)
end
return lost
