"""Property: whatever mix of concurrent requests hits one account through many keys with spend
limits — random sizes, streamed or not, clients that hang up mid-stream — the balance never goes
below zero, no key spends beyond its limit, Σ charges == Σ exact costs, and the ledger balances."""
from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_gateway_billing import SANDBOX_CHAT, tokens_of

from control_plane.money import cost_nano

request_plans = st.lists(
    st.tuples(st.integers(0, 5),            # which key
              st.integers(1, 400),          # max_tokens
              st.integers(1, 2000),         # prompt length
              st.booleans(),                # streamed
              st.booleans()),               # client hangs up after the headers
    min_size=100, max_size=200)


def send(gateway, key, max_tokens, prompt_len, stream, hang_up):
    request = {"model": "sandbox-chat", "stream": stream, "max_tokens": max_tokens,
               "messages": [{"role": "user", "content": "x" * prompt_len}]}
    if hang_up and stream:
        body = json.dumps(request).encode()
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            s.recv(64)
        return None
    return gateway.chat(key, request)


run = {"n": 0}


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=request_plans, limits=st.lists(st.integers(20_000, 400_000), min_size=6, max_size=6),
       balance_nano=st.integers(300_000, 2_000_000))
def test_money_never_leaks_under_concurrency(gateway, plan, limits, balance_nano):
    run["n"] += 1
    email = f"prop{run['n']}@example.com"
    gateway.cli("account", "create", email)
    gateway.cli("credit", email, str(Decimal(balance_nano) / 10**9), "--reason", "property test")
    keys = [gateway.create_key(email, str(Decimal(limit) / 10**9)) for limit in limits]
    key_ids = [k["id"] for k in json.loads(gateway.cli("key", "list", email).stdout)]
    key_ids.sort()

    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda p: send(gateway, keys[p[0]], *p[1:]), plan))
    assert set(statuses) <= {200, 402, None}, statuses

    gateway.wait_drained()
    rows = gateway.usage_rows(keys[0])
    assert len(rows) == len({row["request_id"] for row in rows})  # none twice
    assert statuses.count(200) <= len(rows) <= statuses.count(200) + statuses.count(None)  # none lost
    for row in rows:
        if row["billing_basis"] in ("provider", "drained"):
            assert row["cost_nano"] == cost_nano(tokens_of(row), SANDBOX_CHAT), row
    charged = sum(row["cost_nano"] for row in rows)
    final = gateway.balance_nano(email)
    assert final >= 0
    assert balance_nano - final == charged
    for key_id, limit in zip(key_ids, limits):
        assert sum(row["cost_nano"] for row in rows if row["key_id"] == key_id) <= limit

    engine = sa.create_engine(gateway.database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COALESCE(SUM(amount), 0) FROM ledger_entries")).scalar() == 0
    engine.dispose()
    assert gateway.cli("reconcile", check=False).returncode == 0
