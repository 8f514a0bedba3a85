"""Properties: whatever mix of concurrent requests hits one account through many keys with spend
limits — random sizes, streamed or not, clients that hang up mid-stream — the balance never goes
below zero, no key spends beyond its limit, Σ charges == Σ exact costs, and the ledger balances.
And with a hostile client and a hostile provider at once (issue 10): no charge above its hold,
the balance never below zero, the key within its limit, the ledger's usage debits the charges."""
from __future__ import annotations

import json
import re
import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import sqlalchemy as sa
from helpers import headers_for, post_raw, rows_of, tokens_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simulator import (
    Simulator,
    answer,
    anthropic_message,
    anthropic_sse,
    error_answer,
    openai_chat,
    openai_chat_sse,
    usage,
)
from test_hostile_provider import add_models

request_plans = st.lists(
    st.tuples(st.integers(0, 5),            # which key
              st.integers(1, 400),          # max_tokens
              st.integers(1, 2000),         # prompt length
              st.booleans(),                # streamed
              st.booleans()),               # client hangs up after the headers
    min_size=100, max_size=200)


def request_of(max_tokens, prompt_len, stream) -> dict:
    return {"model": "sandbox-chat", "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "x" * prompt_len}]}


def sandbox_bill(max_tokens, prompt_len, stream) -> tuple[tuple, int]:
    """The token counts (in, cr, cw, cw1h, out, rsn) the sandbox reports for the request (its
    counts: helpers.LONG_PROMPT), from its body as it reaches it (a stream's with the 40 bytes of
    stream_options the gateway adds), and their cost at 150 nano an input, 75 a cached and 600
    an output token."""
    prompt = -(-(len(json.dumps(request_of(max_tokens, prompt_len, stream))) + (40 if stream else 0)) // 4)
    cached = prompt // 128 * 64
    output = min(24, max_tokens)
    return (prompt - cached, cached, 0, 0, output, 0), (prompt - cached) * 150 + cached * 75 + output * 600


def send(gateway, key, max_tokens, prompt_len, stream, hang_up):
    request = request_of(max_tokens, prompt_len, stream)
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
    every = gateway.usage_rows(keys[0])
    assert len(every) == len({row["request_id"] for row in every})  # none twice
    # Refused requests (402) have rows of their own, which charge nothing.
    assert all(row["cost_nano"] == 0 for row in every if row["billing_basis"] == "refused")
    rows = [row for row in every if row["billing_basis"] != "refused"]
    assert statuses.count(200) <= len(rows) <= statuses.count(200) + statuses.count(None)  # none lost
    # Rows of the provider's usage: each served request's, charged its exact cost, and else only
    # those of clients that hung up.
    billed = Counter((row["key_id"], tuple(tokens_of(row).values()), row["cost_nano"]) for row in rows
                     if row["billing_basis"] in ("provider", "drained"))

    def sent(*outcomes):
        return Counter((key_ids[which], *sandbox_bill(*step)) for (which, *step, _), status in zip(plan, statuses)
                       if status in outcomes)

    assert not sent(200) - billed, (sent(200), billed)
    assert not billed - sent(200, None), (sent(200, None), billed)
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


# -- a hostile client and a hostile provider at once ------------------------------------------------------
# The client: random max_tokens (absurd ones too), n, duplicate or escaped deciding fields, streams
# or not, either protocol. The provider: random valid counts, counts above any hold, counts that
# are no token counts, more choices than asked, cut answers, 200 errors. One account, one key.

# Valid values drawn more often than the hostile ones, so that many requests get through.
VALID_MAX_TOKENS = st.integers(1, 3000).map(str)
HOSTILE_MAX_TOKENS = st.one_of(VALID_MAX_TOKENS, VALID_MAX_TOKENS, VALID_MAX_TOKENS, st.sampled_from(
    [None, "null", "0", "-1", "1.5", '"100"', "1e308", "1e19", "9223372037", "4611686019", "100000"]))
HOSTILE_N = st.one_of(st.none(), st.none(), st.integers(1, 8), st.sampled_from([128, 129]))
DUPLICATES = {
    None: "",
    "max_tokens": ',"max_tokens":1',
    "stream_options": ',"stream_options":{"include_usage":true},"stream_options":{"include_usage":false}',
    "n": ',"n":1,"n":128',
    "escaped": ',"max\\u005ftokens":100000',
}
HOSTILE_DUPLICATE = st.sampled_from([None] * 6 + list(DUPLICATES)[1:])
ANSWERS = ["valid", "above_hold", "invalid", "fan_out", "cut", "error"]
INVALID_COUNTS = ["-5", "2.5", '"7"', "true", "1e12", "1e300"]

hostile_plans = st.lists(
    st.tuples(st.sampled_from(["openai", "anthropic"]),
              HOSTILE_MAX_TOKENS,
              HOSTILE_N,
              HOSTILE_DUPLICATE,
              st.booleans(),                                                      # streamed
              st.sampled_from(ANSWERS),
              st.integers(0, 5000),                                               # output tokens
              st.sampled_from(INVALID_COUNTS)),
    min_size=10, max_size=30)


def hostile_body(protocol, tag, max_tokens, n, duplicate, stream) -> bytes:
    """The client's raw body; `tag` in its content tells the provider which answer to give."""
    model = "mp-claude" if protocol == "anthropic" else "mp-chat"
    fields = [f'"model":"{model}"', f'"messages":[{{"role":"user","content":"{tag}"}}]']
    if max_tokens is not None:
        fields.append(f'"max_tokens":{max_tokens}')
    if n is not None:
        fields.append(f'"n":{n}')
    if stream:
        fields.append('"stream":true')
    return ("{" + ",".join(fields) + DUPLICATES[duplicate] + "}").encode()


def hostile_answer(protocol, stream, kind, output, invalid):
    """The provider's answer of a plan: its usage in the protocol's format, as `kind` says."""
    if kind == "error":
        return answer(body=error_answer(protocol))
    count = {"valid": output, "above_hold": 100_000_000, "invalid": invalid, "fan_out": 16 * output,
             "cut": output}[kind]
    if protocol == "anthropic":
        body = (anthropic_sse(usage(input_tokens=10, output_tokens=0), [usage(output_tokens=count)]) if stream
                else anthropic_message(usage(input_tokens=10, output_tokens=count)))
    else:
        counts = usage(prompt_tokens=10, completion_tokens=count)
        choices = 16 if kind == "fan_out" else 1
        body = openai_chat_sse([counts], choices) if stream else openai_chat(counts, choices)
    return answer(body=body, stream=stream, chunking=[97], cut_after=len(body) // 2 if kind == "cut" else None)


@pytest.fixture(scope="module")
def hostile_sim(gateway):
    """A provider answering each request as its plan says, with `mp-chat` and `mp-claude` ($1 / $2
    per 1M, at most 100,000 output tokens) at it."""
    sim = Simulator().start()
    add_models(gateway, sim, "mp", max_output=100_000)
    yield sim
    sim.stop()


hostile_run = {"n": 0}


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=hostile_plans, credit_nano=st.integers(1_000_000, 20_000_000), limit_nano=st.integers(500_000, 10_000_000))
def test_money_holds_against_a_hostile_client_and_a_hostile_provider_at_once(gateway, hostile_sim, plan,
                                                                           credit_nano, limit_nano):
    hostile_run["n"] += 1
    email = f"hostile{hostile_run['n']}-{credit_nano}@example.com"
    gateway.cli("account", "create", email)
    gateway.cli("credit", email, str(Decimal(credit_nano) / 10**9), "--reason", "property test")
    key = gateway.create_key(email, str(Decimal(limit_nano) / 10**9))
    tags = {f"{email}:{i}": step for i, step in enumerate(plan)}

    def answer_for(request):
        step = tags[re.search(rb'"content":"([^"]+)"', request.body).group(1).decode()]
        protocol, _max_tokens, _n, _duplicate, stream, kind, output, invalid = step
        return hostile_answer(protocol, stream, kind, output, invalid)

    hostile_sim.answer_with(answer_for)

    def send(tag):
        protocol, max_tokens, n, duplicate, stream = tags[tag][:5]
        path = "/v1/messages" if protocol == "anthropic" else "/v1/chat/completions"
        return post_raw(gateway, path, hostile_body(protocol, tag, max_tokens, n, duplicate, stream),
                    headers_for(protocol, key))[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, tags))
    assert set(statuses) <= {200, 400, 402}, statuses

    # Every request has its row (the refused ones' charge nothing); the served ones are counted.
    every = rows_of(gateway, key, len(statuses))
    assert all(row["cost_nano"] == 0 for row in every if row["billing_basis"] == "refused")
    rows = [row for row in every if row["billing_basis"] != "refused"]
    assert len(rows) == statuses.count(200)
    for row in rows:
        assert 0 <= row["cost_nano"] <= row["hold_nano"], row
        assert all(type(c) is int and 0 <= c <= 100_000_000 for c in row["tokens"].values()), row
    charged = sum(row["cost_nano"] for row in rows)
    assert charged <= sum(row["hold_nano"] for row in rows)
    assert charged <= limit_nano
    final = gateway.balance_nano(email)
    assert final >= 0
    assert credit_nano - final == charged

    engine = sa.create_engine(gateway.database_url)
    with engine.connect() as conn:
        debits = conn.execute(sa.text(
            "SELECT COALESCE(-SUM(e.amount), 0) FROM ledger_entries e"
            " JOIN ledger_transactions t ON t.id = e.transaction_id"
            " JOIN ledger_accounts a ON a.id = e.ledger_account_id"
            " JOIN accounts c ON c.id = a.account_id"
            " WHERE t.kind = 'usage' AND c.email = :email"), {"email": email}).scalar()
        assert debits == charged
        assert conn.execute(sa.text("SELECT COALESCE(SUM(amount), 0) FROM ledger_entries")).scalar() == 0
    engine.dispose()
    r = gateway.redis()
    assert all(int(r.hget(k, "held") or 0) >= 0 for k in r.scan_iter("tg:{*}:acct:*", count=10_000))
    ok, report = gateway.reconciled()
    assert ok, report
