"""The control plane on a real Redis Cluster (TOLLGATE_REDIS_CLUSTER; tests/redis_cluster.py):
three masters with a replica each, the shards' hot state spread over them. Publishing, the drain,
the lease reaper, reconcile, the journal replay and the console's throttles work as on one Redis,
and a master replaced by its replica while the worker drains loses and doubles nothing."""
from __future__ import annotations

import json
import threading
import time

import pytest
import redis
from cluster_fixtures import redis_cluster  # noqa: F401 (the fixture)
from harness import REPO, free_port, wait_for
from helpers import COST, drain_all, packed_record, reconcile_report, usage_record
from sqlalchemy import func, select

from control_plane import db
from control_plane import settings as settings_module
from control_plane.app import create_app
from control_plane.billing.journal_replay import JournalReplay
from control_plane.console import login_throttle, mail_throttle
from control_plane.hot import connection, redis_keys
from control_plane.hot.lease_reaper import LeaseReaper
from control_plane.hot.route_health import route_views
from control_plane.models import Account, Usage
from control_plane.ops.worker import Worker

TEN_USD = 10_000_000_000
SETTLE = (REPO / "lua" / "tollgate" / "redis_scripts" / "settle.lua").read_text()
NODE = "node-a"


@pytest.fixture
def tollgate_env(tollgate_env, redis_cluster):  # noqa: F811 (the fixture)
    """The settings name the cluster, emptied for each test."""
    redis_cluster.flush()
    return {**tollgate_env, "TOLLGATE_REDIS_CLUSTER": redis_cluster.seeds}


@pytest.fixture
def customers(make_customer, settings):
    """Four customers, one on each of the four shards, $10 each."""
    made = [make_customer(f"c{n}@example.com") for n in range(4)]
    assert sorted(customer.shard(settings) for customer in made) == [0, 1, 2, 3]
    return made


def settle(redis_client, settings, batch_id: str, customer, records: list[dict]) -> None:
    """What nginx does with a settlement batch of one customer's records: the settle script on
    the shard's keys (their master), appending one stream entry and debiting the costs."""
    shard = customer.shard(settings)
    keys = [redis_keys.usage_stream(shard), redis_keys.batch(shard, batch_id), redis_keys.leases(shard),
            redis_keys.account(shard, customer.account.id), redis_keys.key_state(shard, customer.key.id),
            redis_keys.lease(shard, customer.key.id)]
    args = [NODE, 0, "\n".join(packed_record(record) for record in records), customer.key.id,
            sum(int(record["cost"]) for record in records),
            redis_keys.lease_member(customer.key.id, customer.account.id, NODE)]
    redis_client.register_script(SETTLE)(keys=keys, args=args)


def balances(settings, redis_client, customers) -> list[tuple[int, int]]:
    """(Redis bal, SQL balance) of each customer."""
    with db.session_scope(settings) as session:
        return [(int(redis_client.hget(redis_keys.account(c.shard(settings), c.account.id), "bal")),
                 session.get(Account, c.account.id).balance_nano) for c in customers]


def test_publish_spreads_the_hot_state_over_the_masters(settings, cli, redis_client, redis_cluster,  # noqa: F811
                                                        customers, price_version):
    stale = redis_keys.apikey("0" * 64)
    redis_client.hset(stale, "id", 999)
    redis_client.delete(*(redis_keys.account(c.shard(settings), c.account.id) for c in customers))

    result = cli("publish")

    assert result.exit_code == 0, result.output
    names = [redis_keys.account(c.shard(settings), c.account.id) for c in customers]
    assert len({redis_cluster.master_for(name) for name in names}) > 1
    assert [redis_client.hget(name, "bal") for name in names] == [str(TEN_USD)] * 4
    assert json.loads(redis_client.get(redis_keys.model("test-chat")))["name"] == "test-chat"
    assert redis_client.exists(stale) == 0  # found by a scan of every master
    assert redis_client.get(redis_keys.REDIS_RUN) == connection.run_id(settings)
    assert len(connection.run_id(settings).split(",")) == 3


def test_the_drain_moves_every_shards_records_and_reconcile_agrees(settings, cli, drain, redis_client, customers,
                                                                   price_version):
    for n, customer in enumerate(customers):
        records = [usage_record(customer, price_version, f"req-{n}-{i}") for i in range(3)]
        settle(redis_client, settings, f"batch-{n}", customer, records)

    assert drain_all(drain) == 12
    assert [redis_client.xlen(stream) for stream in drain.streams] == [0, 0, 0, 0]
    assert balances(settings, redis_client, customers) == [(TEN_USD - 3 * COST, TEN_USD - 3 * COST)] * 4
    code, report = reconcile_report(cli)
    assert (code, report["drifting"], report["keys_drifting"]) == (0, 0, [])


def test_reconcile_finds_a_drift_on_a_cluster(settings, cli, redis_client, customers):
    drifting = customers[2]
    redis_client.hincrby(redis_keys.account(drifting.shard(settings), drifting.account.id), "bal", 7)
    code, report = reconcile_report(cli)
    assert code != 0
    assert [(row["account_id"], row["drift_nano"]) for row in report["accounts"] if row["drift_nano"]] == [
        (drifting.account.id, 7)]


def test_the_lease_reaper_returns_expired_leases_of_every_shard(settings, redis_client, customers):
    for c in customers:
        shard = c.shard(settings)
        for name in (redis_keys.account(shard, c.account.id), redis_keys.key_state(shard, c.key.id)):
            redis_client.hincrby(name, "held", 500)
        redis_client.hset(redis_keys.lease(shard, c.key.id), NODE, 500)
        redis_client.zadd(redis_keys.leases(shard), {redis_keys.lease_member(c.key.id, c.account.id, NODE): 1000})

    assert LeaseReaper(redis_client, settings.redis_shards).reap(now_ms=2000) == 4
    assert [redis_client.hget(redis_keys.account(c.shard(settings), c.account.id), "held") for c in customers] == [
        "0"] * 4
    assert [redis_client.zcard(redis_keys.leases(shard)) for shard in range(4)] == [0] * 4


def test_the_journal_replay_settles_a_lost_batch_exactly_once(settings, drain, redis_client, customers,
                                                              price_version):
    customer = customers[1]
    shard = customer.shard(settings)
    minute_ago = str(int(time.time() * 1000) - 60_000)
    lines = "".join(f"{shard}\tbatch-lost\t{packed_record(usage_record(customer, price_version, rid, ts=minute_ago))}\n"
                    for rid in ("req-j1", "req-j2"))
    settings.journal_dir.mkdir(parents=True)
    (settings.journal_dir / f"{NODE}-1-2026120100.tsv").write_text(lines)

    assert JournalReplay(settings).run_once() == 2
    (settings.journal_dir / "replayed.json").unlink()  # read the whole journal again: the marker stops it
    assert JournalReplay(settings).run_once() == 0

    assert drain_all(drain) == 2
    assert balances(settings, redis_client, [customer]) == [(TEN_USD - 2 * COST, TEN_USD - 2 * COST)]


def test_the_console_throttles_count_on_a_cluster(settings, redis_client):
    for _ in range(login_throttle.MAX_PER_EMAIL):
        login_throttle.failed(settings, "eve@example.com", "203.0.113.9")
    assert login_throttle.blocked(settings, "eve@example.com", "198.51.100.1")
    assert all(redis_client.ttl(name) > 0 for name in login_throttle._keys("eve@example.com", "203.0.113.9"))
    login_throttle.succeeded(settings, "eve@example.com", "203.0.113.9")
    assert not login_throttle.blocked(settings, "eve@example.com", "203.0.113.9")

    sent = [mail_throttle.allow(settings, "eve@example.com") for _ in range(mail_throttle.MAX_PER_ADDRESS + 1)]
    assert sent == [True] * mail_throttle.MAX_PER_ADDRESS + [False]


def test_health_and_route_health_read_every_master(settings, client, redis_client):
    redis_client.hset(redis_keys.route_health("node-b"), "3", json.dumps({"state": "refused", "fails": 2}))
    assert client.get("/api/healthz").json == {"status": "ok", "database": "ok", "redis": "ok"}
    assert [view.node for view in route_views(settings, [3])[3]] == ["node-b"]


def test_a_cluster_that_does_not_answer_is_a_redis_outage(tmp_path, database_url):
    settings = settings_module.load({"TOLLGATE_HOME": str(tmp_path), "TOLLGATE_DATABASE_URL": database_url,
                                     "TOLLGATE_REDIS_CLUSTER": f"127.0.0.1:{free_port()}"})
    with pytest.raises(redis.ConnectionError):
        connection.client(settings)
    health = create_app({"TESTING": True, "TOLLGATE_SETTINGS": settings}).test_client().get("/api/healthz")
    assert (health.status_code, health.json["redis"]) == (503, "unavailable")


def test_a_master_failover_while_the_worker_drains_loses_and_doubles_nothing(
        settings, cli, redis_client, redis_cluster, customers, price_version):  # noqa: F811 (the fixture)
    streams = {c.shard(settings): redis_keys.usage_stream(c.shard(settings)) for c in customers}
    victim = next((c for c in customers if redis_cluster.replicated(streams[c.shard(settings)])), None)
    if victim is None:
        pytest.skip("no master with a replica is left in this module's cluster")
    doomed = streams[victim.shard(settings)]
    worker = Worker(settings, "cluster-worker")
    stopping = threading.Event()
    failures: list[BaseException] = []

    def work():
        try:
            worker.run(stopping)
        except BaseException as exc:  # the test fails on it below
            failures.append(exc)
            raise

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    batches, per_batch = 48, 4
    for b in range(batches):
        customer = customers[b % 4]
        records = [usage_record(customer, price_version, f"req-{b}-{i}") for i in range(per_batch)]
        if b == batches // 3:
            # What Redis acknowledged but had not yet copied to the replica dies with the master
            # (the gateway's journal replay settles it again: test above); copy it first.
            assert redis_client.execute_command("WAIT", 1, 5000,
                                                target_nodes=redis_client.get_node_from_key(doomed)) == 1
            killed = redis_cluster.kill_master_for(doomed)
        _settle_until_applied(redis_client, settings, f"batch-{b}", customer, records)
    redis_cluster.wait_promoted(doomed, killed)
    wanted = batches * per_batch

    def drained() -> bool:
        with db.session_scope(settings) as session:
            rows = session.scalar(select(func.count()).select_from(Usage))
        return rows == wanted and all(redis_client.xlen(stream) == 0 for stream in streams.values())

    try:
        wait_for(lambda: drained() or failures, 60, "the worker to drain every record")
    finally:
        stopping.set()
        thread.join(timeout=30)
    assert not failures
    with db.session_scope(settings) as session:
        request_ids = sorted(session.scalars(select(Usage.request_id)))
    assert request_ids == sorted(f"req-{b}-{i}" for b in range(batches) for i in range(per_batch))
    each = TEN_USD - batches // 4 * per_batch * COST
    assert balances(settings, redis_client, customers) == [(each, each)] * 4
    code, report = reconcile_report(cli)
    assert (code, report["drifting"], report["keys_drifting"]) == (0, 0, [])


def _settle_until_applied(redis_client, settings, batch_id, customer, records, timeout: float = 30) -> None:
    """settle, again while the cluster fails over (as nginx retries a batch: its marker makes a
    second application nothing)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            settle(redis_client, settings, batch_id, customer, records)
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
