"""Exact charges through the real gateway: usage read from the provider's own answer, streamed
or not, billed to the nano-dollar, recorded in the SQL ledger."""
from __future__ import annotations

import json
import urllib.request

from helpers import LONG_PROMPT, api_get, assert_billed, chat_classes, only_row
from openai import OpenAI

# The figures are the sandbox's (see helpers.LONG_PROMPT) for the bodies the OpenAI SDK sends.


def test_non_streamed_request_is_charged_the_exact_provider_cost(gateway, gw_funded_key):
    key, before = gw_funded_key
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    answer = client.chat.completions.create(
        model="sandbox-reasoner", messages=[{"role": "user", "content": LONG_PROMPT}])
    # A 1,190-byte body: 298 prompt tokens, 128 of them cached; 24 output and 16 reasoning:
    # 170 × 1,100 + 128 × 550 + (24 + 16) × 4,400 = 433,400 nano
    tokens = {"in": 170, "cr": 128, "cw": 0, "cw1h": 0, "out": 24, "rsn": 16}
    assert chat_classes(answer.usage) == tokens
    assert_billed(gateway, key, before, tokens, 433_400, stream=False)


def test_streamed_request_is_charged_the_exact_provider_cost(gateway, gw_funded_key):
    key, before = gw_funded_key
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    chunks = list(client.chat.completions.create(
        model="sandbox-reasoner", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": LONG_PROMPT}]))
    # A 1,244-byte body: 311 prompt tokens, 128 of them cached; 24 output and 16 reasoning:
    # 183 × 1,100 + 128 × 550 + (24 + 16) × 4,400 = 447,700 nano
    tokens = {"in": 183, "cr": 128, "cw": 0, "cw1h": 0, "out": 24, "rsn": 16}
    assert chat_classes(chunks[-1].usage) == tokens
    assert_billed(gateway, key, before, tokens, 447_700, stream=True)


def test_stream_without_include_usage_gets_no_usage_chunk_but_is_billed(gateway, gw_funded_key):
    key, before = gw_funded_key
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    chunks = list(client.chat.completions.create(
        model="sandbox-chat", stream=True, messages=[{"role": "user", "content": "Hi"}]))
    assert chunks, "the stream was empty"
    assert all(c.choices for c in chunks), "the client got the usage chunk it did not ask for"
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("Tollgate sandbox")
    # An 82-byte body, 122 with the stream_options the gateway adds: 31 prompt tokens; 24 output:
    # 31 × 150 + 24 × 600 = 19,050 nano
    assert_billed(gateway, key, before, {"in": 31, "cr": 0, "cw": 0, "cw1h": 0, "out": 24, "rsn": 0}, 19_050,
                  stream=True)


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


def test_usage_lands_in_the_ledger_with_a_description_naming_its_requests_and_model(gateway, gw_customer):
    email, key = gw_customer
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    client.chat.completions.create(model="sandbox-chat", messages=[{"role": "user", "content": "Hi"}])
    only_row(gateway, key)

    txs = api_get(gateway, key, "/api/v1/transactions")["transactions"]
    assert [t["type"] for t in txs] == ["usage", "adjustment"]  # newest first
    # A 68-byte body: 17 prompt tokens; 24 output: 17 × 150 + 24 × 600 = 16,950 nano
    assert (txs[0]["amount_nano"], txs[0]["description"]) == (-16_950, "1 request: sandbox-chat")


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
    assert only_row(gateway, key)["request_id"] == request_id

