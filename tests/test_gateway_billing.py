"""Exact charges through the real gateway: usage read from the provider's own answer, streamed
or not, billed to the nano-dollar, recorded in the SQL ledger."""
from __future__ import annotations

import json
import urllib.request

from helpers import api_get, tokens_of
from openai import OpenAI

from control_plane.money import cost_nano

SANDBOX_CHAT = {"input": 150_000_000, "cached_input": 75_000_000, "cache_write": 150_000_000,
                "cache_write_1h": 150_000_000, "output": 600_000_000, "reasoning": 600_000_000}
SANDBOX_REASONER = {"input": 1_100_000_000, "cached_input": 550_000_000, "cache_write": 1_100_000_000,
                    "cache_write_1h": 1_100_000_000, "output": 4_400_000_000, "reasoning": 4_400_000_000}
LONG_PROMPT = "Summarise the ledger rules. " * 40  # long enough for a cache hit in the sandbox


def classes_from_openai_usage(usage) -> dict:
    """The disjoint usage classes of an OpenAI usage object (prompt includes cached, completion
    includes reasoning)."""
    cached = usage.prompt_tokens_details.cached_tokens
    reasoning = usage.completion_tokens_details.reasoning_tokens
    return {"in": usage.prompt_tokens - cached, "cr": cached, "cw": 0, "cw1h": 0,
            "out": usage.completion_tokens - reasoning, "rsn": reasoning}


def only_usage_row(gateway, key):
    gateway.wait_drained()
    rows = api_get(gateway, key, "/api/v1/usage")["data"]
    assert len(rows) == 1, rows
    return rows[0]


def test_non_streamed_request_is_charged_the_exact_provider_cost(gateway, gw_customer):
    email, key = gw_customer
    before = gateway.balance_nano(email)
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    answer = client.chat.completions.create(
        model="sandbox-reasoner", messages=[{"role": "user", "content": LONG_PROMPT}])
    expected_tokens = classes_from_openai_usage(answer.usage)
    assert expected_tokens["cr"] > 0 and expected_tokens["rsn"] > 0
    expected = cost_nano(expected_tokens, SANDBOX_REASONER)

    row = only_usage_row(gateway, key)
    assert tokens_of(row) == expected_tokens
    assert row["cost_nano"] == expected
    assert row["billing_basis"] == "provider"
    assert gateway.balance_nano(email) == before - expected


def test_streamed_request_is_charged_the_exact_provider_cost(gateway, gw_customer):
    email, key = gw_customer
    before = gateway.balance_nano(email)
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    chunks = list(client.chat.completions.create(
        model="sandbox-reasoner", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": LONG_PROMPT}]))
    usage = chunks[-1].usage
    expected_tokens = classes_from_openai_usage(usage)
    assert expected_tokens["cr"] > 0 and expected_tokens["rsn"] > 0
    expected = cost_nano(expected_tokens, SANDBOX_REASONER)

    row = only_usage_row(gateway, key)
    assert row["stream"] is True
    assert tokens_of(row) == expected_tokens
    assert row["cost_nano"] == expected
    assert gateway.balance_nano(email) == before - expected


def test_stream_without_include_usage_gets_no_usage_chunk_but_is_billed(gateway, gw_customer):
    email, key = gw_customer
    before = gateway.balance_nano(email)
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    chunks = list(client.chat.completions.create(
        model="sandbox-chat", stream=True, messages=[{"role": "user", "content": "Hi"}]))
    assert chunks, "the stream was empty"
    assert all(c.choices for c in chunks), "the client got the usage chunk it did not ask for"
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("Tollgate sandbox")

    row = only_usage_row(gateway, key)
    assert row["cost_nano"] > 0
    assert row["cost_nano"] == cost_nano(tokens_of(row), SANDBOX_CHAT)
    assert gateway.balance_nano(email) == before - row["cost_nano"]


def test_stream_without_include_usage_has_no_usage_fields_on_the_wire(gateway, gw_customer):
    _, key = gw_customer
    body = json.dumps({"model": "sandbox-chat", "stream": True,
                       "messages": [{"role": "user", "content": "Hi"}]}).encode()
    req = urllib.request.Request(f"{gateway.url}/v1/chat/completions", data=body, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read().decode()
    assert '"usage"' not in raw
    assert raw.rstrip().endswith("data: [DONE]")


def test_usage_lands_in_the_ledger_with_a_description_naming_model_and_tokens(gateway, gw_customer):
    email, key = gw_customer
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    client.chat.completions.create(model="sandbox-chat", messages=[{"role": "user", "content": "Hi"}])
    row = only_usage_row(gateway, key)

    txs = api_get(gateway, key, "/api/v1/transactions")["transactions"]
    assert [t["type"] for t in txs] == ["usage", "adjustment"]  # newest first
    usage_tx = txs[0]
    assert usage_tx["amount_nano"] == -row["cost_nano"]
    assert "sandbox-chat" in usage_tx["description"]
    assert str(row["tokens"]["output"]) in usage_tx["description"]


def test_balance_api_reports_the_live_balance(gateway, gw_customer):
    email, key = gw_customer
    assert api_get(gateway, key, "/api/v1/balance") == {
        "balance": 10, "balance_nano": 10_000_000_000, "currency": "USD"}


def test_every_response_carries_a_request_id_that_the_usage_log_finds(gateway, gw_customer):
    _, key = gw_customer
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    raw = client.chat.completions.with_raw_response.create(
        model="sandbox-chat", messages=[{"role": "user", "content": "Hi"}])
    request_id = raw.headers["x-request-id"]
    assert only_usage_row(gateway, key)["request_id"] == request_id

