"""Holds through the real gateway: input the provider may add beyond the request body (earlier
responses, media by URL, files, server-side tools) is held at the model's context window."""
from __future__ import annotations

import json

from helpers import bearer, new_customer, post_json


def test_a_request_naming_an_earlier_response_is_held_at_the_models_context_window(gateway):
    _, key = new_customer(gateway, "0.05")
    # sandbox-reasoner: $1.10 per 1M input (its dearest input class), $4.40 output, 200,000-token
    # window: 200,000 × 1,100 + 100 × 4,400 = 220,440,000 nano.
    status, _, body = post_json(gateway, "/v1/responses", {
        "model": "sandbox-reasoner", "input": "go on", "max_output_tokens": 100,
        "previous_response_id": "resp_earlier"}, bearer(key))
    assert status == 402
    assert "may cost up to $0.22044 " in body["error"]["message"]
    assert "$0.05 is available" in body["error"]["message"]


def test_the_same_request_without_it_is_held_at_its_bytes_and_served(gateway):
    _, key = new_customer(gateway, "0.05")
    status, _, body = post_json(gateway, "/v1/responses",
                                {"model": "sandbox-reasoner", "input": "go on", "max_output_tokens": 100}, bearer(key))
    assert status == 200, body
    gateway.wait_drained()
    [row] = gateway.usage_rows(key)
    raw = len(json.dumps({"model": "sandbox-reasoner", "input": "go on", "max_output_tokens": 100}).encode())
    assert row["hold_nano"] == raw * 1_100 + 100 * 4_400
