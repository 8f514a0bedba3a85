"""The protocol surface beyond the metered calls, against the built-in sandbox models:
count_tokens, the model list in both protocols' shapes, and errors in each protocol's shape."""
from __future__ import annotations

from helpers import ANTHROPIC_VERSION, anthropic_headers, api_get, balance_nano, bearer, request_json

HELLO_CLAUDE = {"model": "sandbox-claude", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}


def assert_anthropic_error(body, error_type):
    assert set(body) >= {"type", "error"}
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]


def test_count_tokens_is_answered(gateway, gw_customer):
    _, key = gw_customer
    status, _, body = request_json(gateway, "POST", "/v1/messages/count_tokens", anthropic_headers(key),
                        {"model": "sandbox-claude", "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200
    assert isinstance(body["input_tokens"], int) and body["input_tokens"] > 0


def test_count_tokens_is_not_billed(gateway, gw_customer):
    _, key = gw_customer
    before = balance_nano(gateway, key)
    for _ in range(3):
        status, _, _ = request_json(gateway, "POST", "/v1/messages/count_tokens", anthropic_headers(key),
                         {"model": "sandbox-claude", "messages": [{"role": "user", "content": "Hi " * 500}]})
        assert status == 200
    gateway.wait_drained()
    assert api_get(gateway, key, "/api/v1/usage")["data"] == []
    assert balance_nano(gateway, key) == before


def test_models_list_is_in_openai_shape(gateway, gw_customer):
    _, key = gw_customer
    status, _, body = request_json(gateway, "GET", "/v1/models", bearer(key))
    assert status == 200
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert {"sandbox-chat", "sandbox-reasoner", "sandbox-claude"} <= set(ids)
    for model in body["data"]:
        assert model["object"] == "model"
        assert isinstance(model["created"], int)
        assert model["owned_by"]


def test_one_model_is_in_openai_shape(gateway, gw_customer):
    _, key = gw_customer
    status, _, body = request_json(gateway, "GET", "/v1/models/sandbox-chat", bearer(key))
    assert status == 200
    assert body["id"] == "sandbox-chat"
    assert body["object"] == "model"
    assert isinstance(body["created"], int)


def test_unknown_model_id_is_404_in_openai_shape(gateway, gw_customer):
    _, key = gw_customer
    status, _, body = request_json(gateway, "GET", "/v1/models/gpt-nonexistent", bearer(key))
    assert status == 404
    assert set(body) == {"error"}
    assert body["error"]["code"] == "model_not_found"
    assert body["error"]["type"] == "invalid_request_error"
    assert "gpt-nonexistent" in body["error"]["message"]


def test_models_list_is_in_anthropic_shape_when_anthropic_version_is_sent(gateway, gw_customer):
    _, key = gw_customer
    status, _, body = request_json(gateway, "GET", "/v1/models", anthropic_headers(key))
    assert status == 200
    assert "object" not in body
    assert body["has_more"] is False
    ids = [m["id"] for m in body["data"]]
    assert "sandbox-claude" in ids
    assert body["first_id"] == ids[0] and body["last_id"] == ids[-1]
    for model in body["data"]:
        assert model["type"] == "model"
        assert model["display_name"]
        assert model["created_at"].endswith("Z")


def test_unknown_model_id_is_404_in_anthropic_shape_when_anthropic_version_is_sent(gateway, gw_customer):
    _, key = gw_customer
    status, _, body = request_json(gateway, "GET", "/v1/models/claude-nonexistent", anthropic_headers(key))
    assert status == 404
    assert_anthropic_error(body, "not_found_error")


def test_models_list_needs_a_key(gateway):
    status, _, body = request_json(gateway, "GET", "/v1/models", {})
    assert status == 401
    assert body["error"]["code"] == "missing_api_key"


def test_anthropic_wrong_key_is_401_in_anthropic_shape(gateway):
    status, _, body = request_json(gateway, "POST", "/v1/messages", anthropic_headers("sk-ant-api03-not-ours"),
                                   HELLO_CLAUDE)
    assert status == 401
    assert_anthropic_error(body, "authentication_error")
    assert "Invalid API key" in body["error"]["message"]


def test_anthropic_missing_key_is_401_in_anthropic_shape(gateway):
    status, _, body = request_json(gateway, "POST", "/v1/messages", {"anthropic-version": ANTHROPIC_VERSION}, HELLO_CLAUDE)
    assert status == 401
    assert_anthropic_error(body, "authentication_error")
    assert "x-api-key" in body["error"]["message"]


def test_anthropic_unknown_model_is_404_in_anthropic_shape(gateway, gw_customer):
    _, key = gw_customer
    status, _, body = request_json(gateway, "POST", "/v1/messages", anthropic_headers(key),
                        {**HELLO_CLAUDE, "model": "claude-nonexistent"})
    assert status == 404
    assert_anthropic_error(body, "not_found_error")
    assert "claude-nonexistent" in body["error"]["message"]


def test_doubled_v1_on_messages_is_404_explaining_the_base_url(gateway, gw_customer):
    _, key = gw_customer
    status, _, body = request_json(gateway, "POST", "/v1/v1/messages", anthropic_headers(key), HELLO_CLAUDE)
    assert status == 404
    assert_anthropic_error(body, "not_found_error")
    message = body["error"]["message"]
    assert "/v1 twice" in message
    assert "base URL" in message and "without /v1" in message


def test_openai_model_on_the_anthropic_endpoint_is_400_naming_the_right_endpoint(gateway, gw_customer):
    _, key = gw_customer
    status, _, body = request_json(gateway, "POST", "/v1/messages", anthropic_headers(key),
                                   {**HELLO_CLAUDE, "model": "sandbox-chat"})
    assert status == 400
    assert_anthropic_error(body, "invalid_request_error")
    assert "/v1/chat/completions" in body["error"]["message"]
