"""Bad input gets a clear error in the protocol's own shape and charges nothing."""
from __future__ import annotations

import json
import time

import openai
import pytest
from harness import free_port
from helpers import CACHE_SECONDS, UPSTREAM_KEY, bearer, exchange, only_row, post_json, post_raw, tg
from openai import OpenAI
from simulator import module_simulator  # noqa: F401 (the module's `sim` fixture)

CHAT = "/v1/chat/completions"
HELLO = {"model": "sandbox-chat", "messages": [{"role": "user", "content": "Hi"}]}


def assert_openai_error(body, code):
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["type"]
    assert body["error"]["message"]


@pytest.fixture
def unchanged_balance(gateway, gw_customer):
    """Asserts after the test that the gw_customer's balance did not move."""
    email, key = gw_customer
    before = gateway.balance_nano(email)
    yield key
    gateway.wait_drained()
    assert gateway.balance_nano(email) == before


def test_malformed_json_is_400(gateway, unchanged_balance):
    status, headers, body = post_json(gateway, CHAT, b'{"model": "sandbox-chat", ', bearer(unchanged_balance))
    assert status == 400
    assert_openai_error(body, "malformed_json")
    assert headers["x-request-id"]


def test_missing_model_is_400(gateway, unchanged_balance):
    status, _, body = post_json(gateway, CHAT, {"messages": []}, bearer(unchanged_balance))
    assert status == 400
    assert_openai_error(body, "missing_model")


def test_body_that_is_not_an_object_is_400(gateway, unchanged_balance):
    status, _, body = post_json(gateway, CHAT, b"[1, 2]", bearer(unchanged_balance))
    assert status == 400
    assert_openai_error(body, "invalid_request")


def test_missing_key_is_401(gateway):
    status, _, body = post_json(gateway, CHAT, HELLO)
    assert status == 401
    assert_openai_error(body, "missing_api_key")


def test_wrong_key_is_401_and_says_why(gateway):
    status, _, body = post_json(gateway, CHAT, HELLO, bearer("sk-proj-an-openai-key"))
    assert status == 401
    assert_openai_error(body, "invalid_api_key")
    assert "stray spaces" in body["error"]["message"]


def test_key_with_stray_whitespace_is_accepted(gateway, gw_customer):
    _, key = gw_customer
    status, _, _ = post_json(gateway, CHAT, HELLO, {"Authorization": f"Bearer   {key}  \t"})
    assert status == 200


def test_revoked_key_is_401_within_two_seconds(gateway, gw_customer):
    email, key = gw_customer
    assert post_json(gateway, CHAT, HELLO, bearer(key))[0] == 200
    key_id = json.loads(gateway.cli("key", "list", email).stdout)[0]["id"]
    gateway.cli("key", "revoke", str(key_id))
    time.sleep(2)
    status, _, body = post_json(gateway, CHAT, HELLO, bearer(key))
    assert status == 401
    assert_openai_error(body, "invalid_api_key")


def test_unknown_model_is_404(gateway, unchanged_balance):
    status, _, body = post_json(gateway, CHAT, {**HELLO, "model": "gpt-nonexistent"}, bearer(unchanged_balance))
    assert status == 404
    assert_openai_error(body, "model_not_found")
    assert "gpt-nonexistent" in body["error"]["message"]


def post_raw_model(gateway, key, model: bytes):
    """A chat request whose model field is exactly these bytes; (status, raw body)."""
    body = b'{"model": "' + model + b'", "messages": [{"role": "user", "content": "Hi"}]}'
    status, _, raw = post_raw(gateway, CHAT, body, {"Content-Type": "application/json", **bearer(key)})
    return status, raw


@pytest.mark.parametrize("model", [
    b"gpt-\xff\xfe", b"overlong-\xc0\xaf", b"surrogate-\xed\xa0\x80", b"cut-\xe2\x82",
    b"cut4-\xf0\x9f\x8c", b"above-\xf4\x90\x80\x80", b"mixed-\xe4\xb8\x96\xff\xf0\x9f\x8c\x8d"])
def test_unknown_model_with_invalid_utf8_is_echoed_as_valid_json_with_replacement_characters(
        gateway, unchanged_balance, model):
    status, raw = post_raw_model(gateway, unchanged_balance, model)
    assert status == 404
    body = json.loads(raw.decode("utf-8"))  # strict: the body is valid UTF-8 JSON
    assert_openai_error(body, "model_not_found")
    assert f"'{model.decode('utf-8', 'replace')}'" in body["error"]["message"]


def test_unknown_model_with_control_characters_is_echoed_escaped(gateway, unchanged_balance):
    status, raw = post_raw_model(gateway, unchanged_balance, b"nul\\u0000esc\\u001bnl\\n")
    assert status == 404
    assert b"\\u0000" in raw and b"\x00" not in raw
    body = json.loads(raw)
    assert "'nul\x00esc\x1bnl\n'" in body["error"]["message"]


@pytest.mark.parametrize("char", ["x", "\u00e9", "\U0001f30d"])
def test_overlong_unknown_model_is_echoed_cut_at_256_characters(gateway, unchanged_balance, char):
    status, raw = post_raw_model(gateway, unchanged_balance, (char * 10_000).encode())
    assert status == 404
    message = json.loads(raw)["error"]["message"]
    assert f"'{char * 256}\u2026'" in message
    assert len(message) < 256 + 200


def test_unknown_path_with_invalid_utf8_is_echoed_as_valid_json(gateway, unchanged_balance):
    status, _, body = post_json(gateway, "/v1/%ff%fe/completions", HELLO, bearer(unchanged_balance))
    assert status == 404
    assert_openai_error(body, "path_not_found")
    assert "/v1/\ufffd\ufffd/completions" in body["error"]["message"]


def test_insufficient_balance_is_402_with_the_amount_needed(gateway):
    key = gateway.create_customer("poor@example.com", "0.000001")
    status, _, body = post_json(gateway, CHAT, {**HELLO, "max_tokens": 4000}, bearer(key))
    assert status == 402
    assert_openai_error(body, "insufficient_balance")
    message = body["error"]["message"]
    # sandbox-chat holds the 94 body bytes at its dearest input price and 4,000 output tokens:
    # 94 × 150 + 4,000 × 600 = 2,414,100 nano
    assert "may cost up to $0.0024141 (input estimate plus 4000 output tokens" in message
    assert "$0.000001 is available, enough for up to 0 output tokens" in message
    assert "max_tokens" in message


def test_key_limit_reached_is_402(gateway):
    key = gateway.create_customer("limited@example.com", "10", limit_usd="0.000001")
    status, _, body = post_json(gateway, CHAT, {**HELLO, "max_tokens": 4000}, bearer(key))
    assert status == 402
    assert_openai_error(body, "key_limit_reached")


def test_body_too_large_is_413(gateway, unchanged_balance):
    # nginx answers a Content-Length above TOLLGATE_MAX_BODY (32 MiB) before reading the body: the
    # request sends none, so the answer is read whole (a client still sending could be reset).
    head = (f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {unchanged_balance}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {33 * 1024 * 1024}\r\n\r\n")
    status, _, raw = exchange(gateway, head.encode())
    assert status == 413
    assert_openai_error(json.loads(raw), "body_too_large")


def test_doubled_v1_path_is_404_with_the_base_url_fix(gateway, gw_customer):
    _, key = gw_customer
    status, _, body = post_json(gateway, "/v1/v1/chat/completions", HELLO, bearer(key))
    assert status == 404
    assert "/v1 twice" in body["error"]["message"]


def test_openai_path_without_v1_is_404_with_the_base_url_fix(gateway, gw_customer):
    _, key = gw_customer
    status, _, body = post_json(gateway, "/chat/completions", HELLO, bearer(key))
    assert status == 404
    assert "start with /v1" in body["error"]["message"]


def test_unreachable_provider_is_502_and_charges_nothing(gateway, unchanged_balance):
    gateway.cli("provider", "add", "nowhere", "--protocol", "openai", "--base-url",
                f"http://127.0.0.1:{free_port()}/v1", "--api-key", "x")
    gateway.cli("model", "add", "nowhere-model", "--provider", "nowhere", "--input", "1", "--output", "2")
    time.sleep(CACHE_SECONDS)
    status, headers, body = post_json(gateway, CHAT, {**HELLO, "model": "nowhere-model"}, bearer(unchanged_balance))
    assert status == 502
    assert_openai_error(body, "provider_unreachable")
    assert headers["x-request-id"] in body["error"]["message"]


def test_a_provider_that_resets_the_connection_is_502_and_charges_nothing(gateway, sim, unchanged_balance):
    tg(gateway, "provider", "add", "resetting", "--protocol", "openai", "--base-url", sim.url + "/v1",
       "--api-key", UPSTREAM_KEY)
    tg(gateway, "model", "add", "resetting-model", "--provider", "resetting", "--input", "1", "--output", "2")
    time.sleep(CACHE_SECONDS)
    upstream = len(sim.requests)
    reset = sim.enqueue_reset()
    status, headers, body = post_json(gateway, CHAT, {**HELLO, "model": "resetting-model"},
                                      bearer(unchanged_balance))
    assert status == 502
    assert_openai_error(body, "provider_unreachable")
    assert headers["x-request-id"] in body["error"]["message"]
    assert (reset.outcome, len(sim.requests)) == ("reset", upstream + 1)  # sent once, not retried
    row = only_row(gateway, unchanged_balance)  # recorded with nothing to bill (docs/internals.md)
    assert (row["status"], row["billing_basis"], row["cost_nano"], sum(row["tokens"].values())) == (502, "none", 0, 0)
    assert row["request_id"] == headers["x-request-id"]  # the id the client is told names its record


def test_sdk_raises_typed_errors_with_the_gateway_message(gateway):
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-tg-wrong")
    with pytest.raises(openai.AuthenticationError, match="Invalid API key"):
        client.chat.completions.create(**HELLO)


def test_account_default_rate_limit_applies_to_its_keys_with_openai_headers(gateway):
    key = gateway.create_customer("ratelimited@example.com", "10")
    gateway.cli("account", "limits", "ratelimited@example.com", "--rpm", "2")
    time.sleep(1.5)
    statuses, headers = [], []
    for _ in range(3):
        status, h, body = post_json(gateway, CHAT, HELLO, bearer(key))
        statuses.append(status)
        headers.append(h)
    assert statuses == [200, 200, 429]
    assert headers[0]["x-ratelimit-limit-requests"] == "2"
    assert headers[1]["x-ratelimit-remaining-requests"] == "0"
    assert int(headers[2]["Retry-After"]) >= 1
    assert body["error"]["code"] == "rate_limit_exceeded"
