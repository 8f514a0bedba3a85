"""Two gateway nodes on one Redis and one PostgreSQL: a full node (`tollgate up`, its control plane
on TCP) and a gateway-only node (`tollgate up --role gateway`, nginx and its journal replay,
passing the console and the APIs to the first). Under load split over both, an account whose
balance covers a tenth of the requests is never overdrawn and is charged exactly; a rate limit
holds across the nodes; one node killed with -9 mid-load loses and doubles nothing it answered (its
journal replay settles what its batches had not), its leases are reaped, and Redis agrees with the
ledger."""
from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from gateway_fixtures import POSTGRES
from harness import Gateway, free_port, wait_for
from helpers import CACHE_SECONDS
from load import call

REQUESTS = 500
# The sandbox's answer to body(i): 25 prompt tokens and 24 output tokens, at sandbox-chat's
# $0.15 / $0.60 per million: 25 × 150 + 24 × 600 = 18,150 nano-USD each.
COST = 18_150
# A tenth of the requests' cost: 50 × 18,150 nano.
BUDGET_USD = "0.0009075"
KILL_AFTER = 150  # answers before the gateway-only node is killed


@pytest.fixture
def nodes(tmp_path, gateway_kind, own_database):
    if gateway_kind != POSTGRES:
        pytest.skip("gateway nodes share a PostgreSQL database")
    control = f"127.0.0.1:{free_port()}"
    shared = {"TOLLGATE_LEASE_TTL_SECONDS": "10"}
    first = Gateway(tmp_path / "first", own_database, {**shared, "TOLLGATE_CONTROL_LISTEN": control}).start()
    second = Gateway(tmp_path / "second", own_database, {
        **shared, "TOLLGATE_DEMO": "0", "TOLLGATE_CONTROL_PLANE": control,
        "TOLLGATE_REDIS_URL": f"unix://{first.home / 'run' / 'redis.sock'}",
        "TOLLGATE_SECRET_KEY": (first.home / "secret.key").read_text().strip(),
    }, role="gateway")
    try:
        second.start()
        yield first, second
    finally:
        second.stop()
        first.stop()


def kill_nginx(node: Gateway) -> None:
    """SIGKILL the node's nginx master and workers (its process group): no graceful anything."""
    master = int((node.home / "run" / "nginx.pid").read_text())
    os.killpg(master, signal.SIGKILL)


def test_a_gateway_node_needs_shared_stores_and_a_control_plane(tmp_path):
    node = Gateway(tmp_path / "alone", role="gateway")
    with pytest.raises(RuntimeError, match="TOLLGATE_REDIS_URL"):
        node.start()


def test_two_nodes_share_an_account_exactly_and_survive_a_node_killed_mid_load(nodes):
    first, second = nodes
    # The gateway-only node serves the console's API through the control node.
    with urllib.request.urlopen(f"{second.url}/api/healthz", timeout=10) as response:
        assert response.status == 200

    # A rate limit counts requests on both nodes: 20 of 40 pass.
    limited = first.create_customer("limited@example.com", "10", None, "--rpm", "20")
    time.sleep(CACHE_SECONDS)
    with ThreadPoolExecutor(40) as pool:
        statuses = [status for status, _id in pool.map(
            lambda i: call((first if i % 2 else second).url, limited, i), range(40))]
    assert statuses.count(200) == 20 and statuses.count(429) == 20, statuses

    email = "shared@example.com"
    key = first.create_customer(email, BUDGET_USD)
    time.sleep(CACHE_SECONDS)
    start = first.balance_nano(email)
    assert start == 907_500
    answered = []
    lock = threading.Lock()
    killed = threading.Event()

    def one(i: int) -> tuple[int, str | None]:
        result = call((first if i % 2 else second).url, key, i)
        with lock:
            answered.append(result)
            if len(answered) == KILL_AFTER and not killed.is_set():
                killed.set()
                kill_nginx(second)
        return result

    with ThreadPoolExecutor(REQUESTS) as pool:
        results = list(pool.map(one, range(REQUESTS)))
    statuses = [status for status, _id in results]
    assert killed.is_set()
    assert set(statuses) <= {200, 402, -1} and -1 in statuses, sorted(set(statuses))
    served = {i % 2: {request_id for n, (status, request_id) in enumerate(results) if status == 200 and n % 2 == i % 2}
              for i in (0, 1)}
    served_by_first, served_by_second = served[1], served[0]
    assert 0 < len(served_by_first | served_by_second) <= 50

    # Every request either node answered is recorded: the killed node's records were in its
    # journal before their batches were sent, and its journal replay settles those its batches had
    # not, once its workers are gone (after the replay's grace).
    r = first.redis()

    def recorded() -> set[str]:
        return {row["request_id"] for row in first.usage_rows(key)}

    wait_for(lambda: served_by_first <= recorded(), 60, "every request the surviving node served")
    wait_for(lambda: served_by_second <= recorded(), 90, "every request the killed node served, from its journal")

    def usage() -> list[dict]:
        return first.usage_rows(key)

    first.wait_drained()
    rows = [row for row in usage() if row["status"] == 200]
    assert len(rows) == len({row["request_id"] for row in rows})
    assert [row["cost_nano"] for row in rows] == [COST] * len(rows)
    final = first.balance_nano(email)
    assert final >= 0
    assert start - final == COST * len(rows)

    # The killed node's leases expire and are reaped: nothing stays held, and Redis agrees
    # with the ledger.
    account = next(name for name in r.scan_iter("tg:{*}:acct:*", count=10_000) if r.hget(name, "bal") == str(final))
    wait_for(lambda: int(r.hget(account, "held") or 0) == 0, 60, "the killed node's leases to be reaped")
    wait_for(lambda: first.reconciled()[0], 60, "reconciliation with drift 0")
