"""Faults end with reconcile drift 0 and no usage record lost or duplicated."""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request

import pytest
from harness import Gateway, wait_for
from openai import OpenAI

REQUESTS = 20


@pytest.mark.parametrize("journaled_twice", [False, True], ids=["journal", "journal-written-twice"])
def test_redis_losing_its_data_loses_no_usage(own_gateway, journaled_twice):
    gw = own_gateway
    key = gw.create_customer("lossy@example.com", "10")
    start = gw.balance_nano("lossy@example.com")
    client = OpenAI(base_url=f"{gw.url}/v1", api_key=key)
    workers = gw.worker_pids()
    assert workers
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)  # records stay in Redis only, not yet in SQL
    try:
        for _ in range(REQUESTS):
            client.chat.completions.create(model="sandbox-chat", messages=[{"role": "user", "content": "Hi"}])
        time.sleep(0.2)
        gw.redis().flushall()  # Redis loses everything not in SQL
        if journaled_twice:  # as when a worker dies between journaling a batch and dropping its buffer
            journal = gw.home / "journal"
            for path in list(journal.glob("*.tsv")):
                (journal / f"copy-{path.name}").write_bytes(path.read_bytes())
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)

    # The worker republishes from SQL and replays the journal (after its grace period).
    wait_for(lambda: len(gw.usage_rows(key)) == REQUESTS, 60, "the journal replay")
    rows = gw.usage_rows(key)
    assert len({row["request_id"] for row in rows}) == REQUESTS
    # Each the OpenAI SDK's 68-byte body: 17 prompt tokens in the sandbox; 24 output:
    # 17 × 150 + 24 × 600 = 16,950 nano
    assert [row["cost_nano"] for row in rows] == [16_950] * REQUESTS
    gw.wait_drained()
    wait_for(lambda: gw.reconciled()[0], 30, "reconciliation")
    assert gw.balance_nano("lossy@example.com") == start - REQUESTS * 16_950


def test_redis_down_answers_503_fast_and_recovers(own_gateway):
    gw = own_gateway
    key = gw.create_customer("outage@example.com", "10")
    body = json.dumps({"model": "sandbox-chat", "messages": [{"role": "user", "content": "Hi"}]}).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    # The key must not be cached by the gateway: wait out the config cache after creating it.
    time.sleep(1.5)
    redis_pid = int((gw.home / "run" / "redis.pid").read_text())
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        try:
            urllib.request.urlopen(urllib.request.Request(f"{gw.url}/v1/chat/completions", data=body,
                                                          headers={**headers, "Authorization": "Bearer sk-tg-uncached"}),
                                   timeout=10)
            raise AssertionError("served without Redis")
        except urllib.error.HTTPError as e:
            status, error = e.code, json.loads(e.read())
        elapsed = time.monotonic() - started
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    assert status == 503
    assert error["error"]["code"] == "gateway_unavailable"
    assert elapsed < 1.0
    # Back by itself once Redis answers again.
    with urllib.request.urlopen(urllib.request.Request(f"{gw.url}/v1/chat/completions", data=body,
                                                       headers=headers), timeout=10) as r:
        assert r.status == 200
    gw.wait_drained()
    ok, report = gw.reconciled()
    assert ok, report


def nginx_worker_pids(gw):
    master = int((gw.home / "run" / "nginx.pid").read_text())
    children = open(f"/proc/{master}/task/{master}/children").read().split()
    return [int(pid) for pid in children]


def test_killing_an_nginx_worker_mid_stream_loses_and_duplicates_nothing(own_gateway):
    from concurrent.futures import ThreadPoolExecutor

    from simulator import Simulator

    gw = own_gateway
    with Simulator() as sim:
        gw.cli("provider", "add", "slow", "--protocol", "openai", "--base-url", sim.url + "/v1", "--api-key", "k")
        gw.cli("model", "add", "slow-chat", "--provider", "slow", "--input", "0.15", "--output", "0.60")
        key = gw.create_customer("killed@example.com", "10")
        start = gw.balance_nano("killed@example.com")
        time.sleep(1.5)
        for _ in range(100):
            sim.enqueue("openai_chat_stream", chunking=[64] * 200, delay=0.02)
        body = json.dumps({"model": "slow-chat", "stream": True, "stream_options": {"include_usage": True},
                           "messages": [{"role": "user", "content": "Hi"}]}).encode()

        def stream(_):
            req = urllib.request.Request(f"{gw.url}/v1/chat/completions", data=body, headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    r.read()
                    return r.status
            except Exception:  # the killed worker's clients lose their connection
                return None

        with ThreadPoolExecutor(100) as pool:
            futures = [pool.submit(stream, i) for i in range(100)]
            time.sleep(0.5)
            os.kill(nginx_worker_pids(gw)[0], signal.SIGKILL)
            statuses = [f.result() for f in futures]

    completed = statuses.count(200)
    assert completed > 0 and statuses.count(None) > 0, statuses
    # A client has its last byte before its request's record is settled and drained.
    wait_for(lambda: len(gw.usage_rows(key)) >= completed, 60, f"{completed} usage rows in SQL")
    gw.wait_drained(60)
    wait_for(lambda: gw.reconciled()[0], 60, "reconciliation")
    rows = gw.usage_rows(key)
    assert len(rows) == len({row["request_id"] for row in rows}) >= completed
    assert gw.balance_nano("killed@example.com") == start - sum(row["cost_nano"] for row in rows)


def test_stopping_returns_the_nodes_leases_at_once(own_gateway):
    gw = own_gateway
    key = gw.create_customer("leased@example.com", "10")
    assert gw.chat(key, {"model": "sandbox-chat", "messages": [{"role": "user", "content": "Hi"}]}) == 200
    gw.wait_drained()
    gw.stop()
    # Start again at once and look long before the old node's leases could expire (120 s).
    gw.start()
    r = gw.redis()
    held = [int(r.hget(k, "held") or 0) for k in r.scan_iter("tg:{*}:acct:*", count=10_000)]
    assert held and all(h == 0 for h in held), held


def test_rate_limits_are_exact_across_two_gateway_nodes_sharing_redis(own_gateway, tmp_path):
    first = own_gateway
    second = Gateway(tmp_path / "second", first.database_url, extra_env={
        "TOLLGATE_REDIS_URL": f"unix://{first.home / 'run' / 'redis.sock'}", "TOLLGATE_DEMO": "0",
        "TOLLGATE_SECRET_KEY": (first.home / "secret.key").read_text().strip()}).start()
    try:
        first.cli("account", "create", "twonodes@example.com")
        first.cli("credit", "twonodes@example.com", "10", "--reason", "test")
        key = first.cli("key", "create", "twonodes@example.com", "--rpm", "5").stdout.strip().splitlines()[-1]
        time.sleep(1.5)
        hello = {"model": "sandbox-chat", "messages": [{"role": "user", "content": "Hi"}]}
        statuses = [(first if i % 2 else second).chat(key, hello) for i in range(10)]
        assert statuses.count(200) == 5 and statuses.count(429) == 5, statuses
        first.wait_drained()
        wait_for(lambda: first.reconciled()[0], 30, "reconciliation")
    finally:
        second.stop()
