"""The gateway on a real Redis Cluster (TOLLGATE_REDIS_CLUSTER; tests/redis_cluster.py): three
masters with a replica each, the shards' hot state spread over them. Billing (streamed or not),
holds, leases, rate limits, the drain and reconcile run on it exactly as on one Redis, and a
master killed under load is replaced by its replica: requests are served or answered 503 while
it is, none is lost or charged twice, and Redis agrees with the ledger after."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from cluster_fixtures import redis_cluster  # noqa: F401 (the fixture)
from harness import Gateway, wait_for
from helpers import CACHE_SECONDS
from load import call

# The sandbox counts a prompt token per 4 bytes of the request and answers 24 output tokens; at
# sandbox-chat's $0.15 / $0.60 per million, body(i) (98 bytes: 25 tokens) costs
# 25 × 150 + 24 × 600 = 18,150 nano-USD, and body(i, stream=True) (157 bytes: 40 tokens)
# 40 × 150 + 24 × 600 = 20,400.
COST = 18_150
STREAM_COST = 20_400


@pytest.fixture(scope="module")
def gateway(redis_cluster, tmp_path_factory):  # noqa: F811 (the fixture)
    node = Gateway(tmp_path_factory.mktemp("cluster-gateway"), extra_env={
        "TOLLGATE_REDIS_CLUSTER": redis_cluster.seeds,
        "TOLLGATE_LEASE_TTL_SECONDS": "10"}).start()
    yield node
    node.stop()


def hot_state_masters(redis_cluster, shards: int = 4) -> set[int]:  # noqa: F811
    return {redis_cluster.master_for(f"tg:{{s{shard}}}:usage") for shard in range(shards)}


def test_billing_holds_leases_rate_limits_and_reconcile_on_a_cluster(gateway, redis_cluster):  # noqa: F811
    # The four shards' hash tags fall on more than one master: the routing is real.
    assert len(hot_state_masters(redis_cluster)) > 1

    keys = {email: gateway.create_customer(email, "1") for email in
            ("c0@example.com", "c1@example.com", "c2@example.com", "c3@example.com")}
    limited = gateway.create_customer("limited@example.com", "1", None, "--rpm", "5")
    # Balance for three requests: 3 × 18,150 nano.
    scarce = gateway.create_customer("scarce@example.com", "0.00005445")
    time.sleep(CACHE_SECONDS)

    jobs = [(key, i, i % 2 == 0) for key in keys.values() for i in range(10)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda job: call(gateway.url, *job)[0], jobs))
    assert statuses == [200] * len(jobs)

    limited_statuses = [call(gateway.url, limited, i)[0] for i in range(10)]
    assert limited_statuses.count(200) == 5 and limited_statuses.count(429) == 5, limited_statuses

    with ThreadPoolExecutor(10) as pool:
        scarce_statuses = list(pool.map(lambda i: call(gateway.url, scarce, i)[0], range(10)))
    assert set(scarce_statuses) <= {200, 402} and 1 <= scarce_statuses.count(200) <= 3, scarce_statuses

    gateway.wait_drained()
    for email, key in keys.items():
        rows = gateway.usage_rows(key)
        assert sorted(row["cost_nano"] for row in rows) == [COST] * 5 + [STREAM_COST] * 5, email
        assert gateway.balance_nano(email) == 1_000_000_000 - 5 * COST - 5 * STREAM_COST  # 999,807,250
    assert gateway.balance_nano("limited@example.com") == 1_000_000_000 - 5 * COST
    charged = [row for row in gateway.usage_rows(scarce) if row["status"] == 200]
    assert len(charged) == scarce_statuses.count(200)
    assert gateway.balance_nano("scarce@example.com") == 54_450 - COST * len(charged) >= 0

    # Idle leases go back to their accounts; Redis agrees with the ledger.
    r = gateway.redis()
    accounts = [name for name in r.scan_iter("tg:{*}:acct:*", count=10_000) if ":acct:" in name]
    assert len(accounts) >= 6
    wait_for(lambda: all(int(r.hget(name, "held") or 0) == 0 for name in accounts), 30, "idle leases returned")
    wait_for(lambda: gateway.reconciled()[0], 30, "reconciliation with drift 0")


def move_slot(redis_cluster, key: str) -> tuple[int, int]:  # noqa: F811
    """Moves the slot of `key` to another master the way `redis-cli --cluster reshard` does
    (IMPORTING, MIGRATING, MIGRATE of its keys a few at a time, then NODE everywhere), so
    clients meet ASK while it moves and MOVED after; returns (from port, to port)."""
    slot = int(redis_cluster.node(redis_cluster.ports[0]).cluster("keyslot", key))
    source_port = redis_cluster.master_for(key)
    target_port = next(port for port in sorted(hot_state_masters(redis_cluster, 16) | {source_port})
                       if port != source_port)
    source, target = redis_cluster.node(source_port), redis_cluster.node(target_port)
    source_id, target_id = source.cluster("myid"), target.cluster("myid")
    target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
    while keys := source.execute_command("CLUSTER GETKEYSINSLOT", slot, 2):
        source.execute_command("MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *keys)
        time.sleep(0.05)
    for port in (target_port, source_port, *redis_cluster.ports):
        try:
            if redis_cluster.node(port).info("replication")["role"] == "master":
                redis_cluster.node(port).execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        except redis.RedisError:
            continue  # a node killed earlier in the module
    return source_port, target_port


def test_a_shard_moved_to_another_master_under_load_is_followed(gateway, redis_cluster):  # noqa: F811
    email = "resharded@example.com"
    key = gateway.create_customer(email, "5")
    time.sleep(CACHE_SECONDS)
    account = account_key(gateway, email)
    results: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        i = 0
        while not stop.is_set():
            results.append(call(gateway.url, key, worker * 10_000 + i))
            i += 1

    threads = [threading.Thread(target=load, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(results) >= 40, 60, "load before the move")
        source, target = move_slot(redis_cluster, account)
        moved_at = len(results)
        wait_for(lambda: len(results) >= moved_at + 80, 60, "load after the move")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert redis_cluster.master_for(account) == target != source
    statuses = [status for status, _request_id in results]
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses[moved_at:].count(200) >= 80 - statuses[moved_at:].count(503)
    served = {request_id for status, request_id in results if status == 200}
    assert len(served) == statuses.count(200)

    def recorded() -> set[str]:
        return {row["request_id"] for row in gateway.usage_rows(key) if row["status"] == 200}

    # A settlement batch met TRYAGAIN while the slot moved is retried a second later: the streams
    # can be empty while it waits in nginx.
    wait_for(lambda: served <= recorded(), 60, "every served request recorded")
    gateway.wait_drained()
    rows = [row for row in gateway.usage_rows(key) if row["status"] == 200]
    assert len(rows) == len({row["request_id"] for row in rows}) == len(served)
    assert gateway.balance_nano(email) == 5_000_000_000 - COST * len(rows)
    wait_for(lambda: gateway.reconciled()[0], 60, "reconciliation with drift 0")


def account_key(gateway: Gateway, email: str) -> str:
    """The Redis key of the account's hot state (its shard's master serves it)."""
    account_id = json.loads(gateway.cli("account", "show", email, "--json").stdout)["id"]
    return next(iter(gateway.redis().scan_iter(f"tg:{{*}}:acct:{account_id}", count=10_000)))


def test_a_master_killed_under_load_is_replaced_and_nothing_is_lost_or_doubled(gateway, redis_cluster):  # noqa: F811
    email = "failover@example.com"
    key = gateway.create_customer(email, "5")
    time.sleep(CACHE_SECONDS)
    start = gateway.balance_nano(email)
    assert start == 5_000_000_000
    account = account_key(gateway, email)
    results: list[tuple[float, int, str | None]] = []
    streamed: set[str | None] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        i = 0
        while not stop.is_set():
            stream = i % 3 == 0
            status, request_id = call(gateway.url, key, worker * 10_000 + i, stream=stream)
            with lock:
                results.append((time.monotonic(), status, request_id))
                if stream:
                    streamed.add(request_id)
            i += 1

    threads = [threading.Thread(target=load, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(results) >= 60, 60, "load before the failover")
        killed_at = time.monotonic()
        killed = redis_cluster.kill_master_for(account)
        redis_cluster.wait_promoted(account, killed)
        promoted_at = time.monotonic()
        wait_for(lambda: sum(1 for t, status, _ in results if t > promoted_at and status == 200) >= 60, 60,
                 "load served after the failover")
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    statuses = {status for _, status, _ in results}
    assert statuses <= {200, 503}, sorted(statuses)
    refused = [t for t, status, _ in results if status == 503]
    # Refusals only while the master was down or just replaced (the slot map is read again
    # within a tenth of a second).
    assert all(killed_at - 1 <= t <= promoted_at + 5 for t in refused), (killed_at, promoted_at, refused)
    served = {request_id for _, status, request_id in results if status == 200}
    assert len(served) > 120

    def recorded() -> set[str]:
        return {row["request_id"] for row in gateway.usage_rows(key) if row["status"] == 200}

    wait_for(lambda: served <= recorded(), 60, "every served request recorded")
    gateway.wait_drained()
    rows = [row for row in gateway.usage_rows(key) if row["status"] == 200]
    assert len(rows) == len({row["request_id"] for row in rows}) == len(served)
    assert sorted(row["cost_nano"] for row in rows) == sorted(
        STREAM_COST if request_id in streamed else COST for request_id in served)
    streams = len(served & streamed)
    assert gateway.balance_nano(email) == start - COST * (len(served) - streams) - STREAM_COST * streams
    wait_for(lambda: gateway.reconciled()[0], 60, "reconciliation with drift 0")
