"""Failed requests in the usage log (issue 13, the console's Logs page): every request of a known,
active key makes exactly one usage row, also one the gateway refuses after authentication
(billing basis `refused`, nothing held or charged) and one a provider answers with an error. The
row has the status the client got, the error's code (the gateway's catalogue code, or the
provider's `error.code`, else `error.type`) and the message the client got, and nothing of the
prompt. No money moves for any of them, and the books stay reconciled."""
from __future__ import annotations

import http.client
import json

import pytest
from harness import Gateway
from helpers import UPSTREAM_KEY, balance_nano, headers_for, key_hot_state, new_customer, post_raw, usage_in_sql
from simulator import module_simulator  # noqa: F401 (the module's `sim` fixture)
from test_hostile_provider import add_models

from control_plane.models import Usage

CANARY = "canary-7f3a9c-do-not-log"  # in every prompt: it must reach no usage column
PROMPT = [{"role": "user", "content": f"Keep this secret: {CANARY}"}]
PATH = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


def send(gateway, key: str, protocol: str, body: dict | bytes):
    """(status, x-request-id, answer body) of one request."""
    status, headers, answer = post_raw(gateway, PATH[protocol], body, headers_for(protocol, key))
    return status, headers["x-request-id"], answer


def message_of(answer: bytes) -> str:
    """The error message an error answer gives the client."""
    return json.loads(answer)["error"]["message"]


def nothing_of_the_prompt(row: Usage) -> None:
    values = {column.key: getattr(row, column.key) for column in Usage.__table__.columns}
    assert CANARY not in repr(values), values


def assert_no_money_moved(gateway, key: str, balance: int) -> None:
    assert (balance_nano(gateway, key), key_hot_state(gateway, key)["spent"]) == (balance, "0")


# -- refused by the gateway after authentication -----------------------------------------------------

REFUSALS = {
    # name: (protocol, body, customer options (credit in USD, key spend limit in USD), status, code)
    "malformed JSON": ("openai", b'{"model": "sandbox-chat", "messages": [{"role": "user", "content": "'
                       + CANARY.encode() + b'"}', ("10", None), 400, "malformed_json"),
    "not an object": ("openai", json.dumps([CANARY]).encode(), ("10", None), 400, "invalid_request"),
    "stream not a boolean": ("openai", {"model": "sandbox-chat", "messages": PROMPT, "stream": "yes"},
                             ("10", None), 400, "invalid_parameter"),
    "max_tokens above the model's": ("openai", {"model": "sandbox-chat", "messages": PROMPT, "max_tokens": 10**9},
                                     ("10", None), 400, "invalid_parameter"),
    "no model": ("openai", {"messages": PROMPT}, ("10", None), 400, "missing_model"),
    "unknown model": ("openai", {"model": "no-such-model", "messages": PROMPT}, ("10", None), 404,
                      "model_not_found"),
    "unknown model, Anthropic": ("anthropic", {"model": "no-such-claude", "max_tokens": 10, "messages": PROMPT},
                                 ("10", None), 404, "model_not_found"),
    "the other protocol's model": ("openai", {"model": "sandbox-claude", "messages": PROMPT}, ("10", None), 400,
                                   "invalid_request"),
    "no balance": ("openai", {"model": "sandbox-chat", "messages": PROMPT}, ("0", None), 402,
                   "insufficient_balance"),
    "key limit": ("anthropic", {"model": "sandbox-claude", "max_tokens": 100, "messages": PROMPT},
                  ("10", "0.000001"), 402, "key_limit_reached"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_request_has_one_row_with_the_error_the_client_got(gateway, case):
    protocol, body, (usd, limit_usd), status, code = REFUSALS[case]
    _, key = new_customer(gateway, usd, limit_usd=limit_usd)
    balance = balance_nano(gateway, key)
    got, request_id, answer = send(gateway, key, protocol, body)
    assert got == status, answer
    [row] = usage_in_sql(gateway, key, 1)
    assert (row.status, row.error_code, row.error_message, row.request_id) == (
        status, code, message_of(answer), request_id)
    assert (row.billing_basis, row.cost_nano, row.hold_nano, row.overage_nano, row.attempts, row.provider,
            row.upstream_model, row.price_version_id, row.route_id, row.transaction_id) == (
        "refused", 0, 0, 0, 0, "", "", None, None, None)
    assert row.endpoint == ("messages" if protocol == "anthropic" else "chat.completions")
    nothing_of_the_prompt(row)
    assert_no_money_moved(gateway, key, balance)


def test_an_unknown_model_is_recorded_by_the_name_asked(gateway):
    """Only as the name asked: a made-up name is no model of the daily usage or the dashboard."""
    _, key = new_customer(gateway)
    send(gateway, key, "openai", {"model": "gpt-nonexistent\t9", "messages": PROMPT})
    [row] = usage_in_sql(gateway, key, 1)
    assert (row.model, row.requested_model) == ("", "gpt-nonexistent 9")


def test_a_rate_limited_request_is_recorded_after_the_one_admitted(gateway):
    _, key = new_customer(gateway, "10", "--rpm", "1")
    body = {"model": "sandbox-chat", "messages": PROMPT, "max_tokens": 5}
    assert send(gateway, key, "openai", body)[0] == 200
    status, request_id, answer = send(gateway, key, "openai", body)
    assert status == 429
    # Each nginx worker settles its own batches: the refusal's row can reach SQL first.
    admitted, refused = sorted(usage_in_sql(gateway, key, 2), key=lambda row: row.status)
    assert (admitted.status, admitted.billing_basis, admitted.error_code, admitted.error_message) == (
        200, "provider", "", "")
    assert (refused.status, refused.billing_basis, refused.error_code, refused.error_message,
            refused.request_id, refused.cost_nano, refused.model) == (
        429, "refused", "rate_limit_exceeded", message_of(answer), request_id, 0, "sandbox-chat")


def test_a_chunked_body_too_large_of_a_known_key_has_its_row(tmp_path, own_database):
    """nginx finds a chunked body too large only while the access phase reads it, after the key
    was checked (a Content-Length too large is refused before, with no key known: no row)."""
    gw = Gateway(tmp_path / "gw", own_database, {"TOLLGATE_MAX_BODY": "1k"}).start()
    try:
        _, key = new_customer(gw)
        body = json.dumps({"model": "sandbox-chat", "messages": [{"role": "user", "content": "x" * 5000}]}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        conn.request("POST", PATH["openai"], body=iter([body]), headers=headers_for("openai", key),
                     encode_chunked=True)
        answer = conn.getresponse()
        status, request_id, message = answer.status, answer.getheader("x-request-id"), message_of(answer.read())
        conn.close()
        assert status == 413
        [row] = usage_in_sql(gw, key, 1)
        assert (row.status, row.error_code, row.error_message, row.request_id, row.billing_basis) == (
            413, "body_too_large", message, request_id, "refused")
    finally:
        gw.stop()


# -- answered with a provider's error -----------------------------------------------------------------

@pytest.fixture(scope="module")
def fr(gateway, sim):
    """The shared instance with fr-chat (OpenAI protocol) and fr-claude (Anthropic) at the
    simulator, fr-multi with two routes there, and fr-down at a provider that cannot be reached."""
    add_models(gateway, sim, "fr")
    gateway.cli("model", "add", "fr-multi", "--provider", "fr-openai", "--input", "1", "--output", "2")
    gateway.cli("route", "add", "fr-multi", "--provider", "fr-openai", "--upstream-model", "fr-multi-second",
                "--priority", "1", "--input", "1", "--output", "2")
    gateway.cli("provider", "add", "fr-down", "--protocol", "openai", "--base-url", sim.url_unreachable + "/v1",
                "--api-key", UPSTREAM_KEY)
    gateway.cli("model", "add", "fr-down", "--provider", "fr-down", "--input", "1", "--output", "2")
    sim.reset()
    yield gateway
    sim.reset()


def ask(fr, protocol: str, model: str):
    """A fresh customer's request to `model`: (key, balance before, status, request id, answer)."""
    _, key = new_customer(fr)
    balance = balance_nano(fr, key)
    body = {"model": model, "max_tokens": 10, "messages": PROMPT}
    return (key, balance, *send(fr, key, protocol, body))


PROVIDER_ERRORS = {
    # name: (protocol, status, body, its code, its message)
    "OpenAI's code": ("openai", 400, {"error": {"message": "Invalid value for 'temperature'.",
                                                "type": "invalid_request_error", "param": "temperature",
                                                "code": "invalid_value"}}, "invalid_value",
                      "Invalid value for 'temperature'."),
    "OpenAI's type without a code": ("openai", 422, {"error": {"message": "Unprocessable.", "type": "server_error",
                                                               "param": None, "code": None}}, "server_error",
                                     "Unprocessable."),
    "Anthropic's type": ("anthropic", 400, {"type": "error", "error": {"type": "invalid_request_error",
                                                                       "message": "max_tokens: 999999 > 8192"}},
                         "invalid_request_error", "max_tokens: 999999 > 8192"),
    "Anthropic's overload": ("anthropic", 529, {"type": "error", "error": {"type": "overloaded_error",
                                                                           "message": "Overloaded"}},
                             "overloaded_error", "Overloaded"),
}


@pytest.mark.parametrize("case", PROVIDER_ERRORS)
def test_a_provider_error_is_recorded_with_its_code_and_message(fr, sim, case):
    protocol, status, body, code, message = PROVIDER_ERRORS[case]
    sim.enqueue(body=json.dumps(body).encode(), status=status)
    key, balance, got, request_id, answer = ask(fr, protocol, "fr-claude" if protocol == "anthropic" else "fr-chat")
    assert (got, json.loads(answer)) == (status, body)  # the provider's answer, as it sent it
    [row] = usage_in_sql(fr, key, 1)
    assert (row.status, row.error_code, row.error_message, row.request_id) == (status, code, message, request_id)
    assert (row.billing_basis, row.cost_nano, row.attempts, row.provider) == (
        "none", 0, 1, f"fr-{protocol}")
    nothing_of_the_prompt(row)
    assert_no_money_moved(fr, key, balance)


HOSTILE_BODIES = {
    # name: (body as sent, the code and message recorded)
    "above the 64 KB read": (json.dumps({"error": {"message": "x" * 100_000, "code": "huge"}}).encode(), ("", "")),
    "not JSON": (b"<html><body>502 Bad Gateway</body></html>", ("", "")),
    "values that are no strings": (b'{"error": {"message": {"text": "no"}, "code": ["x"], "type": 7.5}}', ("", "")),
    "an error that is a string": (b'{"error": "model is loading"}', ("", "model is loading")),
    "escapes and control characters": (rb'{"error": {"message": "one\ntwo\tthree\u0000four\r\u00e9", "code": "c\u0001d"}}',
                                       ("c d", "one two three four é")),
    "invalid UTF-8": (b'{"error": {"message": "bad \xff\xfe bytes \xe2\x82", "code": "utf\xc0"}}',
                      ("utf\ufffd", "bad \ufffd\ufffd bytes \ufffd")),
    "a message above 500 bytes": (json.dumps({"error": {"message": "é" * 400 + "!", "code": "c" * 80}}).encode(),
                                  ("c" * 64, "é" * 250)),
}


@pytest.mark.parametrize("case", HOSTILE_BODIES)
def test_a_hostile_error_body_leaves_a_valid_record(fr, sim, case):
    body, recorded = HOSTILE_BODIES[case]
    sim.enqueue(body=body, status=500)
    key, balance, status, request_id, _ = ask(fr, "openai", "fr-chat")
    assert status == 500
    [row] = usage_in_sql(fr, key, 1)  # the worker took the record: not quarantined
    assert (row.status, row.error_code, row.error_message, row.request_id) == (500, *recorded, request_id)
    assert_no_money_moved(fr, key, balance)


def test_every_attempt_failing_records_the_gateways_error(fr, sim):
    sim.enqueue(body=json.dumps({"error": {"message": "first", "code": "down"}}).encode(), status=500)
    sim.enqueue(body=json.dumps({"error": {"message": "second", "code": "down"}}).encode(), status=500)
    key, balance, status, request_id, answer = ask(fr, "openai", "fr-multi")
    assert (status, json.loads(answer)["error"]["code"]) == (502, "provider_error")
    [row] = usage_in_sql(fr, key, 1)
    assert (row.status, row.error_code, row.error_message, row.request_id) == (
        502, "provider_error", message_of(answer), request_id)
    assert (row.billing_basis, row.cost_nano, row.attempts, row.failed_statuses) == ("none", 0, 2, "500,500")
    assert_no_money_moved(fr, key, balance)


def test_a_provider_that_cannot_be_reached_is_recorded(fr):
    key, balance, status, request_id, answer = ask(fr, "openai", "fr-down")
    assert status == 502
    [row] = usage_in_sql(fr, key, 1)
    assert (row.status, row.error_code, row.error_message, row.request_id) == (
        502, "provider_unreachable", message_of(answer), request_id)
    assert_no_money_moved(fr, key, balance)


def test_a_provider_refusing_the_gateways_key_is_recorded_as_the_client_was_told(fr, sim):
    sim.enqueue(body=b'{"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}',
                status=401)
    key, balance, status, request_id, answer = ask(fr, "openai", "fr-chat")
    assert (status, json.loads(answer)["error"]["code"]) == (502, "provider_credentials_refused")
    [row] = usage_in_sql(fr, key, 1)
    assert (row.status, row.error_code, row.error_message, row.request_id) == (
        502, "provider_credentials_refused", message_of(answer), request_id)
    assert_no_money_moved(fr, key, balance)


def test_failed_requests_leave_the_books_reconciled(fr, sim):
    sim.enqueue(body=b"\xff not json", status=503)
    _, key = new_customer(fr)
    assert send(fr, key, "openai", {"model": "fr-chat", "max_tokens": 10, "messages": PROMPT})[0] == 503
    assert send(fr, key, "openai", {"model": "sandbox-chat", "messages": PROMPT, "stream": 1})[0] == 400
    usage_in_sql(fr, key, 2)
    fr.wait_drained()
    ok, report = fr.reconciled()
    assert ok, report
