-- Settle a batch of finished requests and append their usage records.
-- KEYS: the shard's usage stream.
-- ARGV: shard tag, node, batch id, lease expiry ms, then 4 values per record: key id, account
-- id, cost, and the record packed as tab-separated values (docs/internals.md). Costs are summed
-- per key first, so a batch touches each key's hashes once. Idempotent by batch id.
-- Returns the key ids whose lease on this node was gone (reaped).
local tag, node = ARGV[1], ARGV[2]
if not redis.call('SET', tag .. 'batch:' .. ARGV[3], '1', 'NX', 'EX', 3600) then
  return {}
end
local costs, accounts, order = {}, {}, {}
for i = 5, #ARGV, 4 do
  local kid = ARGV[i]
  if not costs[kid] then
    costs[kid] = 0
    accounts[kid] = ARGV[i + 1]
    order[#order + 1] = kid
  end
  costs[kid] = costs[kid] + tonumber(ARGV[i + 2])
  redis.call('XADD', KEYS[1], '*', 'r', ARGV[i + 3])
end
local lost = {}
for _, kid in ipairs(order) do
  local aid, cost = accounts[kid], costs[kid]
  local lease_key = tag .. 'lease:' .. kid
  if cost > 0 then
    local acct_key, key_key = tag .. 'acct:' .. aid, tag .. 'key:' .. kid
    local owed = string.format('%d', cost)
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
