"""/api/v1/usage's filters (key_id, model, status, from, to, request_id: the Logs page's), their
pages, the errors of filters that are not valid, and the parsing they share with the console."""
from __future__ import annotations

import json
import urllib.error
from datetime import UTC, date, datetime

import pytest
from console_usage import CHAT_COST, REASONER_COST, chat, console_customer, drained_rows, record_failed, usage_of
from helpers import api_get, bearer, request_json

from control_plane.billing import usage_log

# 2024-02-29T23:59:59.999Z and 2024-03-01T00:00:00.000Z: either side of a UTC midnight.
BEFORE_MIDNIGHT_MS = 1_709_251_199_999
AT_MIDNIGHT_MS = 1_709_251_200_000


@pytest.fixture(scope="module")
def customer(gateway, mail_server):
    """Keys a and b: a asked sandbox-chat and sandbox-reasoner, b sandbox-chat; a failed with 503
    at the last moment of 2024-02-29 and with 429 at the first of 2024-03-01."""
    customer = console_customer(gateway, mail_server, ("a", "b"))
    for count, (key, model) in enumerate((("a", "sandbox-chat"), ("a", "sandbox-reasoner"), ("b", "sandbox-chat")), 1):
        chat(gateway, customer.keys[key], model)
        drained_rows(gateway, customer.keys["a"], count)  # recorded in this order
    record_failed(gateway, customer, "a", f"leap-{customer.account_id}", 503, "provider_unavailable",
                  "Overloaded.", at_ms=BEFORE_MIDNIGHT_MS)
    record_failed(gateway, customer, "a", f"march-{customer.account_id}", 429, "rate_limit_exceeded",
                  "Slow down.", at_ms=AT_MIDNIGHT_MS)
    customer.rows = drained_rows(gateway, customer.keys["a"], 5)
    yield customer
    customer.client.close()


def summary(rows: list[dict]) -> list[tuple]:
    return [(row["model"], row["status"], row["cost_nano"], row["error_code"]) for row in rows]


def test_every_filter(customer, gateway):
    key = customer.keys["b"]  # any key of the account reads the whole account's usage
    a, b = customer.key_ids["a"], customer.key_ids["b"]
    chat_row = ("sandbox-chat", 200, CHAT_COST, "")
    reasoner_row = ("sandbox-reasoner", 200, REASONER_COST, "")
    march = ("sandbox-chat", 429, 0, "rate_limit_exceeded")
    leap = ("sandbox-chat", 503, 0, "provider_unavailable")
    today = datetime.now(UTC).date().isoformat()
    assert summary(usage_of(gateway, key)) == [march, leap, chat_row, reasoner_row, chat_row]
    cases = {
        f"key_id={b}": [chat_row],
        f"key_id={a}": [march, leap, reasoner_row, chat_row],
        "model=sandbox-reasoner": [reasoner_row],
        "model=sandbox": [],
        "status=ok": [chat_row, reasoner_row, chat_row],
        "status=error": [march, leap],
        "status=503": [leap],
        "status=ERROR&model=sandbox-chat": [march, leap],
        "from=2024-02-29&to=2024-02-29": [leap],
        "from=2024-03-01&to=2024-03-01": [march],
        "from=2024-02-01&to=2024-03-31": [march, leap],
        "to=2024-02-29": [leap],
        f"from={today}": [chat_row, reasoner_row, chat_row],
        f"from={today}&to={today}&key_id={a}&status=ok": [reasoner_row, chat_row],
        f"request_id=leap-{customer.account_id}": [leap],
        "request_id=leap": [],
        f"key_id={a}&request_id=leap-{customer.account_id}": [leap],
        f"key_id={b}&request_id=leap-{customer.account_id}": [],
    }
    for query, expected in cases.items():
        assert summary(usage_of(gateway, key, query)) == expected, query
    leap_row = usage_of(gateway, key, "status=503")[0]
    assert (leap_row["created_at"], leap_row["error_message"]) == ("2024-02-29T23:59:59.999Z", "Overloaded.")


def test_filtered_pages_keep_their_filter(customer, gateway):
    key = customer.keys["a"]
    first = api_get(gateway, key, "/api/v1/usage?status=ok&limit=2")
    assert len(first["data"]) == 2 and first["has_more"] is True
    rest = api_get(gateway, key, f"/api/v1/usage?status=ok&limit=2&before={first['next_before']}")
    assert len(rest["data"]) == 1 and rest["has_more"] is False and rest["next_before"] is None
    assert [row["request_id"] for row in first["data"] + rest["data"]] == [
        row["request_id"] for row in customer.rows if row["status"] < 400]


@pytest.mark.parametrize("query, name, requirement", [
    ("status=fine", "status", "ok, error or an HTTP status from 100 to 599"),
    ("status=99", "status", "ok, error or an HTTP status from 100 to 599"),
    ("key_id=-1", "key_id", "a key id (an integer)"),
    ("from=yesterday", "from", "a UTC date as YYYY-MM-DD"),
    ("to=2024-02-30", "to", "a UTC date as YYYY-MM-DD"),
    ("from=2024-03-02&to=2024-03-01", "to", "the same day as 'from' or later"),
    ("request_id=" + "x" * 65, "request_id", "a request id (at most 64 characters)"),
])
def test_a_filter_that_is_not_valid_is_an_invalid_parameter_error(customer, gateway, query, name, requirement):
    status, _headers, body = request_json(gateway, "GET", f"/api/v1/usage?{query}", bearer(customer.keys["a"]))
    assert status == 400
    assert body["error"]["code"] == "invalid_parameter"
    assert f"'{name}' must be {requirement}." in body["error"]["message"]


def test_another_accounts_rows_never_match(customer, gateway, mail_server):
    other = console_customer(gateway, mail_server)
    theirs = customer.rows[0]["request_id"]
    for query in (f"request_id={theirs}", f"key_id={customer.key_ids['a']}", "status=429", "from=2024-03-01"):
        assert usage_of(gateway, other.keys["main"], query) == [], query
    other.client.close()


def test_a_wrong_key_is_refused_before_the_filters(gateway):
    with pytest.raises(urllib.error.HTTPError) as refused:
        api_get(gateway, "sk-tg-not-a-key", "/api/v1/usage?status=teapot")
    assert refused.value.code == 401 and json.loads(refused.value.read())["error"]["code"] == "invalid_api_key"


def test_parsing_the_filters():
    assert usage_log.parse({}) == usage_log.UsageFilters()
    parsed = usage_log.parse({"key_id": " 7 ", "model": "m", "status": "OK", "from": "2024-01-01", "to": "2024-01-02",
                              "request_id": " r1 "})
    assert parsed == usage_log.UsageFilters(7, "m", "ok", date(2024, 1, 1), date(2024, 1, 2), "r1")
    assert parsed.params() == {"key_id": "7", "model": "m", "status": "ok", "from": "2024-01-01",
                               "to": "2024-01-02", "request_id": "r1"}
    assert usage_log.parse({"status": "429", "model": ""}).params() == {"status": "429"}
    with pytest.raises(usage_log.FilterError, match="'from' must be a UTC date as YYYY-MM-DD."):
        usage_log.parse({"from": "20240101"})
