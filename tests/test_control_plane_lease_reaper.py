"""The lease reaper returns the funds of leases whose node stopped renewing them."""
import pytest

from control_plane.hot import redis_keys
from control_plane.hot.lease_reaper import LeaseReaper

NOW_MS = 1_700_000_000_000


@pytest.fixture
def lease(settings, redis_client, customer):
    """Node 'node-a' leased $0.50 of the customer's key, expiring at NOW_MS."""
    shard, key_id, account_id = customer.shard(settings), customer.key.id, customer.account.id
    member = f"{key_id}|{account_id}|node-a"
    redis_client.hincrby(redis_keys.account(shard, account_id), "held", 500_000_000)
    redis_client.hincrby(redis_keys.key_state(shard, key_id), "held", 500_000_000)
    redis_client.hset(redis_keys.lease(shard, key_id), "node-a", 500_000_000)
    redis_client.zadd(redis_keys.leases(shard), {member: NOW_MS})
    return shard, key_id, account_id, member


@pytest.fixture
def reaper(settings, redis_client):
    return LeaseReaper(redis_client, settings.redis_shards)


def test_expired_lease_is_returned(redis_client, lease, reaper):
    shard, key_id, account_id, member = lease
    assert reaper.reap(now_ms=NOW_MS + 1) == 1
    assert redis_client.hget(redis_keys.account(shard, account_id), "held") == "0"
    assert redis_client.hget(redis_keys.key_state(shard, key_id), "held") == "0"
    assert redis_client.exists(redis_keys.lease(shard, key_id)) == 0
    assert redis_client.zscore(redis_keys.leases(shard), member) is None


def test_live_lease_is_left_alone(redis_client, lease, reaper):
    shard, key_id, account_id, _member = lease
    assert reaper.reap(now_ms=NOW_MS - 1) == 0
    assert redis_client.hget(redis_keys.lease(shard, key_id), "node-a") == "500000000"


def test_lease_renewed_after_listing_is_left_alone(redis_client, lease, reaper):
    """The script re-checks the expiry: the node may renew between ZRANGEBYSCORE and the script."""
    shard, key_id, account_id, member = lease
    redis_client.zadd(redis_keys.leases(shard), {member: NOW_MS + 60_000})
    assert reaper._return(shard, redis_keys.leases(shard), member, NOW_MS + 1) == 0
    assert redis_client.hget(redis_keys.account(shard, account_id), "held") == "500000000"


def test_malformed_lease_member_is_dropped(settings, redis_client, reaper):
    redis_client.zadd(redis_keys.leases(0), {"garbage": NOW_MS})
    assert reaper.reap(now_ms=NOW_MS + 1) == 0
    assert redis_client.zcard(redis_keys.leases(0)) == 0
