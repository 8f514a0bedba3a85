"""The process's Redis client (one Redis, or a Redis Cluster), its scripts, and which shard holds
an account."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.connection import parse_url
from redis.exceptions import RedisClusterException

from .. import logs
from ..settings import Settings
from . import redis_keys

log = logging.getLogger(__name__)

_clients: dict[tuple[tuple[str, ...], str, Path | None], redis.Redis | RedisCluster] = {}


def client(settings: Settings) -> redis.Redis | RedisCluster:
    """The process's Redis client (and its connection pools): a RedisCluster of
    settings.redis_cluster's seed nodes (with the password of settings.redis_url, if it has one),
    else a Redis of settings.redis_url. A cluster none of whose seeds answers raises
    redis.ConnectionError, as a Redis that does not answer does on its first command."""
    name = (settings.redis_cluster, settings.redis_url, settings.redis_ca_file)
    connection = _clients.get(name)
    if connection is None:
        if settings.redis_cluster:
            credentials = {field: value for field, value in parse_url(settings.redis_url).items()
                           if field in ("username", "password")}
            seeds = [ClusterNode(host.strip("[]"), int(port))
                     for host, port in (address.rsplit(":", 1) for address in settings.redis_cluster)]
            with _unreachable_as_connection_error():
                connection = _Cluster(startup_nodes=seeds, decode_responses=True, **credentials,
                                      ssl=settings.redis_tls, **tls_options(settings))
        else:
            connection = redis.Redis.from_url(settings.redis_url, decode_responses=True, **tls_options(settings))
        connection = _clients.setdefault(name, connection)
    return connection


def tls_options(settings: Settings) -> dict:
    """redis-py's options for a Redis reached by TLS (rediss://; every node of a cluster too,
    with ssl=True): the server's certificate verified, against TOLLGATE_REDIS_CA's certificates
    or the system's, and its name checked."""
    if not settings.redis_tls:
        return {}
    options = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if settings.redis_ca_file:
        options["ssl_ca_certs"] = str(settings.redis_ca_file)
    return options


def pipeline_across_slots(settings: Settings):
    """A pipeline of commands on keys in several hash slots: one MULTI/EXEC transaction on one
    Redis; on a cluster, which has no transactions across slots, a plain pipeline (each command
    atomic by itself). One key a command: a cluster's pipeline deletes one key at a time."""
    return client(settings).pipeline(transaction=not settings.redis_cluster)


def ping(settings: Settings) -> None:
    """Raises a RedisError unless Redis answers: one Redis, or every master of a cluster."""
    connection = client(settings)
    if isinstance(connection, RedisCluster):
        connection.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        connection.ping()


def run_id(settings: Settings) -> str:
    """Which run of Redis this is (INFO server run_id); on a cluster, its masters' run ids: a
    master restarted, or replaced by its replica, makes it another run (billing/restart_repair.py)."""
    connection = client(settings)
    if isinstance(connection, RedisCluster):
        return ",".join(sorted(connection.info("server", target_nodes=node)["run_id"]
                               for node in connection.get_primaries()))
    return connection.info("server")["run_id"]


@contextmanager
def _unreachable_as_connection_error():
    """redis-py reports a cluster none of whose nodes it can reach as a RedisClusterException
    caused by their connection errors; that is no RedisError, which is what every caller rides out
    as an outage of Redis. Other RedisClusterExceptions (misuse, such as keys of several slots in
    one script) pass as they are."""
    try:
        yield
    except RedisClusterException as exc:
        if isinstance(exc.__cause__, (redis.ConnectionError, redis.TimeoutError)):
            raise redis.ConnectionError(str(exc)) from exc
        raise


class _Cluster(RedisCluster):
    def execute_command(self, *args, **kwargs):
        with _unreachable_as_connection_error():
            return super().execute_command(*args, **kwargs)

    def pipeline(self, transaction=None, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        pipe.__class__ = _ClusterPipeline  # the same pipeline, its outage reported as _Cluster's
        return pipe


class _ClusterPipeline(ClusterPipeline):
    def execute(self, raise_on_error: bool = True):
        with _unreachable_as_connection_error():
            return super().execute(raise_on_error)


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
