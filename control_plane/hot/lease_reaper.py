"""Returns the leases of gateway nodes that stopped renewing them (crashed or cut off).

A node leases part of a key's available funds (docs/internals.md, Leases); the amount sits in the
account's and the key's `held` until the node settles or returns it. Past its expiry, the lease
goes back here.
"""
from __future__ import annotations

import logging
import time

import redis

from . import redis_keys

log = logging.getLogger(__name__)

# KEYS[1] leases zset, KEYS[2] the key's lease hash, KEYS[3] account hash, KEYS[4] key hash.
# ARGV[1] zset member, ARGV[2] node id, ARGV[3] now (ms). Re-checks the expiry, since the node
# may have renewed the lease since we listed it. `held` is released by at most what it holds: it
# never goes below zero. Integers go to Redis formatted with %d (no exponent form).
RETURN_LEASE = """
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) > tonumber(ARGV[3]) then return false end
local amount = redis.call('HGET', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
local leased = tonumber(amount or '0') or 0
if leased > 0 then
  for i = 3, 4 do
    local held = tonumber(redis.call('HGET', KEYS[i], 'held') or '0') or 0
    local release = math.min(leased, math.max(held, 0))
    if release > 0 then redis.call('HINCRBY', KEYS[i], 'held', string.format('%d', -release)) end
  end
end
redis.call('ZREM', KEYS[1], ARGV[1])
return amount or '0'
"""


NEVER = 2**62  # an expiry every lease has passed


class LeaseReaper:
    def __init__(self, client: redis.Redis, shards: int):
        self.redis = client
        self.shards = shards
        self._return_lease = client.register_script(RETURN_LEASE)

    def reap(self, now_ms: int | None = None) -> int:
        """Return every lease whose expiry has passed; how many."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        returned = 0
        for shard in range(self.shards):
            leases = redis_keys.leases(shard)
            for member in self.redis.zrangebyscore(leases, "-inf", now_ms):
                returned += self._return(shard, leases, member, now_ms)
        return returned

    def release_node(self, node: str) -> int:
        """Return every lease of a gateway node that has stopped (cleanly: its settlements are
        done), without waiting for their expiry; how many."""
        released = 0
        for shard in range(self.shards):
            leases = redis_keys.leases(shard)
            for member in self.redis.zrange(leases, 0, -1):
                parsed = redis_keys.parse_lease_member(member)
                if parsed and parsed[2] == node:
                    released += self._return(shard, leases, member, NEVER)
        return released

    def _return(self, shard: int, leases: str, member: str, now_ms: int) -> int:
        parsed = redis_keys.parse_lease_member(member)
        if parsed is None:
            log.error("dropping malformed lease member %r on shard %s", member, shard)
            self.redis.zrem(leases, member)
            return 0
        key_id, account_id, node = parsed
        keys = [
            leases,
            redis_keys.lease(shard, key_id),
            redis_keys.account(shard, account_id),
            redis_keys.key_state(shard, key_id),
        ]
        amount = self._return_lease(keys=keys, args=[member, node, now_ms])
        if amount is None:
            return 0  # renewed meanwhile
        log.info("returned expired lease: key %s, account %s, node %s, %s nano", key_id, account_id, node, amount)
        return 1
