"""Concurrent streams on one account whose balance covers only some of them: the balance never
goes negative, and what is charged is exactly the sum of the admitted requests' costs."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from helpers import api_get, tokens_of

STREAMS = 50
# Each body is 115 or 116 bytes, 155 or 156 with the stream_options the gateway adds: 39 prompt
# tokens; 24 output: 39 × 150 + 24 × 600 = 20,250 nano (the sandbox's counts: helpers.LONG_PROMPT).
TOKENS = {"in": 39, "cr": 0, "cw": 0, "cw1h": 0, "out": 24, "rsn": 0}
COST = 20_250


def stream_once(gateway, key, i):
    return gateway.chat(key, {"model": "sandbox-chat", "stream": True, "max_tokens": 30,
                              "messages": [{"role": "user", "content": f"request {i}"}]})


def test_concurrent_streams_never_overdraw_and_charge_exactly(gateway):
    email = "concurrent@example.com"
    key = gateway.create_customer(email, "0.0002")
    start_nano = gateway.balance_nano(email)
    r = gateway.redis()

    with ThreadPoolExecutor(STREAMS) as pool:
        statuses = list(pool.map(lambda i: stream_once(gateway, key, i), range(STREAMS)))

    admitted = statuses.count(200)
    assert set(statuses) <= {200, 402}, statuses
    assert 0 < admitted < STREAMS, statuses

    gateway.wait_drained()
    every = api_get(gateway, key, f"/api/v1/usage?limit={STREAMS + 10}")["data"]
    # The refused requests have rows of their own: 402, nothing charged.
    refused = [row for row in every if row["billing_basis"] == "refused"]
    assert [(row["status"], row["cost_nano"]) for row in refused] == [(402, 0)] * (STREAMS - admitted)
    rows = [row for row in every if row["billing_basis"] != "refused"]
    assert len(rows) == admitted
    assert [(tokens_of(row), row["cost_nano"]) for row in rows] == [(TOKENS, COST)] * admitted
    exact = admitted * COST
    final = gateway.balance_nano(email)
    hot = {name: r.hgetall(name) for pattern in ("tg:{*}:acct:*", "tg:{*}:key:*", "tg:{*}:lease:*")
           for name in r.scan_iter(pattern, count=10_000)}
    assert final >= 0, (final, start_nano, exact, [(row["billing_basis"], row["cost_nano"]) for row in rows], hot)
    assert start_nano - final == exact

    # Every hold and lease returns once the key is idle.
    account = next(k for k in r.scan_iter("tg:{*}:acct:*", count=10_000) if r.hget(k, "bal") == str(final))
    deadline = time.monotonic() + 10
    while int(r.hget(account, "held")) != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert int(r.hget(account, "held")) == 0
