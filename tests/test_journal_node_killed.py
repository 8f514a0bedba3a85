"""A gateway node whose whole nginx (master and workers) is killed with -9 before any batch of
what it answered was settled loses none of it: every record was in the usage journal before its
request finished, and once the node's workers are gone the journal replay settles them, once."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from gateway_fixtures import POSTGRES
from harness import Gateway, wait_for
from helpers import CACHE_SECONDS
from load import call
from test_multi_node import COST, kill_nginx

REQUESTS = 20


def nginx_workers(master: int) -> set[int]:
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:  # its parent
            pids.add(int(stat.parent.name))
    return pids


def settle_only_hourly(node: Gateway) -> None:
    """Reloads the node's nginx with a settlement interval of an hour: what it answers waits in
    open batches (nothing reaches Redis) until it is killed."""
    conf_path = node.home / "nginx" / "tollgate.json"
    conf = json.loads(conf_path.read_text())
    conf["settle_interval"] = 3600
    conf_path.write_text(json.dumps(conf))
    master = int((node.home / "run" / "nginx.pid").read_text())
    before = nginx_workers(master)
    os.kill(master, signal.SIGHUP)
    wait_for(lambda: (now := nginx_workers(master)) and not now & before, 30, "nginx's workers to be replaced")


def usage_rows(node: Gateway, key: str) -> list[dict]:
    """The key's account's usage rows; none while the node's nginx is not back."""
    try:
        return node.usage_rows(key)
    except OSError:
        return []


@pytest.fixture
def node(tmp_path, gateway_kind, own_database):
    if gateway_kind == POSTGRES:
        pytest.skip("the journal does not depend on the database: SQLite's run covers it")
    gw = Gateway(tmp_path / "gw", own_database, {"TOLLGATE_LEASE_TTL_SECONDS": "10"}).start()
    yield gw
    gw.stop()


def test_a_node_killed_before_settling_loses_nothing_it_answered_and_doubles_nothing(node):
    email = "journaled@example.com"
    key = node.create_customer(email, "10")
    time.sleep(CACHE_SECONDS)
    start = node.balance_nano(email)
    settle_only_hourly(node)

    answered = [call(node.url, key, i) for i in range(REQUESTS)]
    assert [status for status, _rid in answered] == [200] * REQUESTS
    served = {request_id for _status, request_id in answered}
    lines = [line.split("\t") for path in (node.home / "journal").glob("*.tsv")
             for line in path.read_text().splitlines()]
    assert sorted(fields[2] for fields in lines) == sorted(served)  # records only: no batch was sent
    assert node.balance_nano(email) == start

    kill_nginx(node)

    # The supervisor starts nginx again; the worker's journal replay finds the dead workers'
    # open batches (their locks free) and settles them after its grace.
    wait_for(lambda: len(usage_rows(node, key)) == REQUESTS, 90, "the journal replay")
    rows = node.usage_rows(key)
    assert {row["request_id"] for row in rows} == served
    assert [row["cost_nano"] for row in rows] == [COST] * REQUESTS
    node.wait_drained()
    assert node.balance_nano(email) == start - REQUESTS * COST
    r = node.redis()
    account = next(name for name in r.scan_iter("tg:{*}:acct:*", count=10_000)
                   if r.hget(name, "bal") == str(start - REQUESTS * COST))
    wait_for(lambda: int(r.hget(account, "held") or 0) == 0, 60, "the killed node's leases to be reaped")
    wait_for(lambda: node.reconciled()[0], 60, "reconciliation with drift 0")
