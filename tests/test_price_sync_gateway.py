"""Price sync through the real gateway: a model the list gives no price for is never served at $0 —
`--add-new` does not add it, and calling its name answers 404 model_not_found — while a priced
entry it adds is served and billed exactly at the list's prices."""
from __future__ import annotations

import json
import uuid

import pytest
from harness import wait_for
from helpers import balance_nano, bearer, new_customer, only_row, post_raw, rows_of
from simulator import Simulator
from test_price_sync import write_list

# The openai_chat fixture's usage: 5,561 input, 6,784 cached, 809 output, 1,536 reasoning tokens.
# At the list's $1 input, $2 output per 1M (cached at the input price, reasoning at the output price):
# (5,561 + 6,784) × 1,000 + (809 + 1,536) × 2,000 = 17,035,000 nano-USD.
CHAT_COST = 17_035_000


@pytest.fixture
def sim():
    with Simulator() as simulator:
        yield simulator


def chat(gateway, key: str, model: str):
    status, _headers, body = post_raw(gateway, "/v1/chat/completions",
                                      {"model": model, "messages": [{"role": "user", "content": "Hi"}]},
                                      {**bearer(key), "Content-Type": "application/json"})
    return status, json.loads(body)


def provider_for(gateway, sim: Simulator) -> str:
    name = f"p-{uuid.uuid4().hex[:8]}"
    gateway.cli("provider", "add", name, "--protocol", "openai", "--base-url", sim.url + "/v1", "--api-key", "sk-up")
    return name


def test_a_model_the_list_gives_no_price_answers_404_and_a_priced_one_is_billed_exactly(gateway, sim, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    priced, unpriced, free = f"priced-{suffix}", f"unpriced-{suffix}", f"per-query-{suffix}"
    path = write_list(tmp_path, {
        priced: {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, "litellm_provider": "openai",
                 "mode": "chat"},
        # Priced per image, not per token: no token price at all.
        unpriced: {"output_cost_per_image": 0.04, "litellm_provider": "openai", "mode": "image_generation"},
        # $0 per token (LiteLLM's way to say "priced per query"): never added to be served at $0.
        free: {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "input_cost_per_query": 0.002,
               "mode": "rerank"},
    })
    provider = provider_for(gateway, sim)
    result = gateway.cli("prices", "sync", "--source", path, "--format", "litellm", "--apply", "--add-new",
                         "--provider", provider, "--json")
    added = {item["model"]: item for item in json.loads(result.stdout)["new_models"]}
    assert (added[priced]["added"], added[free]["added"]) == (True, False)
    assert unpriced not in added  # an entry without input and output prices is no candidate at all
    _email, key = new_customer(gateway)
    before = balance_nano(gateway, key)
    for name in (unpriced, free):
        status, body = chat(gateway, key, name)
        assert (status, body["error"]["code"]) == (404, "model_not_found")
    status, _body = chat(gateway, key, priced)
    assert status == 200
    # The priced request's row, and the two refused ones, which cost nothing (in the order the
    # worker drained them, which need not be the order they were made in).
    rows = rows_of(gateway, key, 3)
    assert sorted((row["requested_model"], row["status"], row["cost_nano"]) for row in rows) == sorted([
        (priced, 200, CHAT_COST), (free, 404, 0), (unpriced, 404, 0)])
    assert balance_nano(gateway, key) == before - CHAT_COST
    # Until priced: once the list prices it per token, the next sync adds it and it is served.
    path = write_list(tmp_path, {unpriced: {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}})
    gateway.cli("prices", "sync", "--source", path, "--format", "litellm", "--apply", "--add-new",
                "--provider", provider)
    wait_for(lambda: chat(gateway, key, unpriced)[0] == 200, 5, f"{unpriced} served once priced")


def test_a_route_whose_cost_is_zero_in_every_class_is_served_at_zero_today(gateway, sim):
    """What happens today to a model whose route costs $0 in every class: it is served, and charged
    nothing. Such a cost can only be given by hand (`--input 0 --output 0`): a sync never makes it
    (a route becoming $0 is held; --add-new skips $0 entries) and every route has a cost version (a
    model without one is not published: 404)."""
    model = f"zero-{uuid.uuid4().hex[:8]}"
    gateway.cli("model", "add", model, "--provider", provider_for(gateway, sim), "--input", "0", "--output", "0")
    _email, key = new_customer(gateway)
    before = balance_nano(gateway, key)
    status, _body = chat(gateway, key, model)
    assert status == 200
    assert only_row(gateway, key)["cost_nano"] == 0
    assert balance_nano(gateway, key) == before
