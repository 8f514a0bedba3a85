"""The process's Redis client, its scripts, and which shard holds an account."""
from __future__ import annotations

import logging

import redis

from .. import logs
from ..settings import Settings
from . import redis_keys

log = logging.getLogger(__name__)

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


def hget_many(settings: Settings, fields: list[tuple[str, str]]) -> list[str | None]:
    """HGET of each (hash, field) in one pipelined round trip; all None (logged) when Redis cannot
    be reached, so callers show the SQL figure instead (live balances, keys' spend)."""
    if not fields:
        return []
    try:
        pipe = client(settings).pipeline(transaction=False)
        for name, field in fields:
            pipe.hget(name, field)
        return pipe.execute()
    except redis.RedisError as exc:
        log.warning("live figures from SQL: %s", logs.error_summary(exc))
        return [None] * len(fields)
