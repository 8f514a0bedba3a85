"""The process's Redis client, its scripts, and which shard holds an account."""
from __future__ import annotations

import redis

from ..settings import Settings
from . import redis_keys

_clients: dict[str, redis.Redis] = {}


def client(settings: Settings) -> redis.Redis:
    """The process's Redis client (and connection pool) for settings.redis_url."""
    connection = _clients.get(settings.redis_url)
    if connection is None:
        connection = _clients.setdefault(
            settings.redis_url, redis.Redis.from_url(settings.redis_url, decode_responses=True)
        )
    return connection


def run_script(settings: Settings, source: str, keys: list, args: list):
    """EVALSHA of a script, loading it on first use."""
    return client(settings).register_script(source)(keys=keys, args=args)


def shard(settings: Settings, account_id: int) -> int:
    return redis_keys.shard_of(account_id, settings.redis_shards)
