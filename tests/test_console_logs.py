"""The console's request log: /console/logs, its filters and pages, /console/logs.csv and a
request's detail, against the shared instance; figures checked against /api/v1/usage and literal
values, and other accounts' ids tried everywhere."""
from __future__ import annotations

import csv
import html
import io
import json
import re
import urllib.error
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from console_client import ConsoleClient
from console_usage import (
    CHAT_COST,
    HI,
    REASONER_COST,
    chat,
    console_customer,
    drained_rows,
    listed_request_ids,
    record_failed,
    usage_of,
)
from helpers import api_get

# 2023-11-14T22:13:20.123Z: a day long before the others' requests.
LONG_AGO_MS = 1_700_000_000_123


@pytest.fixture(scope="module")
def customer(gateway, mail_server):
    """An account with two keys: main made two sandbox-chat requests and one to sandbox-reasoner,
    batch one to sandbox-chat; and two failed requests of main, one today (429) and one on
    2023-11-14 (502)."""
    customer = console_customer(gateway, mail_server, ("main", "batch"))
    chat(gateway, customer.keys["main"])
    chat(gateway, customer.keys["main"], "sandbox-reasoner")
    chat(gateway, customer.keys["batch"])
    chat(gateway, customer.keys["main"])
    drained_rows(gateway, customer.keys["main"], 4)  # so the failed ones below are newer
    suffix = customer.account_id
    record_failed(gateway, customer, "main", f"failed-429-{suffix}", 429, "rate_limit_exceeded",
                  "Too many requests: the key's rpm is 60.")
    record_failed(gateway, customer, "main", f"failed-502-{suffix}", 502, "provider_unreachable",
                  "The provider could not be reached.", at_ms=LONG_AGO_MS)
    customer.rows = drained_rows(gateway, customer.keys["main"], 6)
    yield customer
    customer.client.close()


@pytest.fixture(scope="module")
def stranger(gateway, mail_server):
    """Another account with one request."""
    other = console_customer(gateway, mail_server)
    chat(gateway, other.keys["main"])
    other.rows = drained_rows(gateway, other.keys["main"], 1)
    yield other
    other.client.close()


def page_ids(customer, query: str = "") -> list[str]:
    response = customer.client.get(f"/console/logs?{query}")
    assert response.status_code == 200, response.text
    return listed_request_ids(response.text)


def csv_rows(customer, query: str = "") -> list[dict]:
    response = customer.client.get(f"/console/logs.csv?{query}")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    return list(csv.DictReader(io.StringIO(response.text)))


def ids_of(rows: list[dict]) -> list[str]:
    return [row["request_id"] for row in rows]


def test_the_log_lists_every_request_newest_first_with_its_exact_cost(customer):
    ids = ids_of(customer.rows)
    assert page_ids(customer) == ids
    costs = [row["cost_nano"] for row in customer.rows]
    # The failed ones were recorded last; the others in the order the instance's nginx workers flushed them.
    assert costs[:2] == [0, 0] and sorted(costs[2:]) == [CHAT_COST, CHAT_COST, CHAT_COST, REASONER_COST]
    page = customer.client.get("/console/logs").text
    for figure in ("$0.00001725", "$0.000198", "main", "batch", "sandbox-reasoner", "rate_limit_exceeded",
                   "Too many requests: the key&#39;s rpm is 60.", "provider_unreachable", "2023-11-14 22:13:20 UTC"):
        assert figure in page, figure
    assert 'href="/console/logs.csv"' in page


def test_the_csv_holds_every_figure_of_the_usage_api(customer):
    rows = csv_rows(customer)
    assert ids_of(rows) == ids_of(customer.rows)
    names = {customer.key_ids[name]: name for name in customer.key_ids}
    for line, api in zip(rows, customer.rows, strict=True):
        assert line["created_at"] == api["created_at"]
        assert int(line["cost_nano"]) == Decimal(line["cost_usd"]) * 10**9 == api["cost_nano"]
        assert int(line["key_id"]) == api["key_id"] and line["key_name"] == names[api["key_id"]]
        for name, count in api["tokens"].items():
            assert int(line[f"{name}_tokens"]) == count
        for field in ("model", "requested_model", "provider", "billing_basis", "error_code", "error_message"):
            assert line[field] == api[field]
        assert (int(line["status"]), int(line["hold_nano"])) == (api["status"], api["hold_nano"])
    by_id = {line["request_id"]: line for line in rows}
    reasoner = next(row for row in customer.rows if row["model"] == "sandbox-reasoner")
    assert (by_id[reasoner["request_id"]]["cost_usd"], by_id[reasoner["request_id"]]["reasoning_tokens"]) == (
        "0.000198", "16")


@pytest.mark.parametrize("query, expected", [
    ("model=sandbox-reasoner", lambda row: row["model"] == "sandbox-reasoner"),
    ("status=ok", lambda row: row["status"] < 400),
    ("status=error", lambda row: row["status"] >= 400),
    ("status=429", lambda row: row["status"] == 429),
    ("status=200&model=sandbox-chat", lambda row: row["status"] == 200 and row["model"] == "sandbox-chat"),
    ("from=2023-11-14&to=2023-11-14", lambda row: row["created_at"].startswith("2023-11-14")),
    ("to=2023-11-13", lambda row: False),
    ("from=2000-01-01&to=2000-12-31", lambda row: False),
    (f"from={datetime.now(UTC).date().isoformat()}", lambda row: row["created_at"] >= datetime.now(UTC).date().isoformat()),
])
def test_filters_select_the_same_rows_on_the_page_the_csv_and_the_api(customer, query, expected):
    wanted = [row["request_id"] for row in customer.rows if expected(row)]
    assert ids_of(usage_of(customer.client.gateway, customer.keys["main"], query)) == wanted
    assert page_ids(customer, query) == wanted
    assert ids_of(csv_rows(customer, query)) == wanted


def test_the_key_filter_and_the_request_id_search(customer):
    batch = customer.key_ids["batch"]
    wanted = [row["request_id"] for row in customer.rows if row["key_id"] == batch]
    assert len(wanted) == 1
    for query in (f"key_id={batch}", f"request_id={wanted[0]}", f"request_id=+{wanted[0]}+&key_id={batch}"):
        assert page_ids(customer, query) == wanted
        assert ids_of(csv_rows(customer, query)) == wanted
        assert ids_of(usage_of(customer.client.gateway, customer.keys["main"], query)) == wanted
    assert page_ids(customer, f"request_id={wanted[0]}&key_id={customer.key_ids['main']}") == []
    page = customer.client.get(f"/console/logs?key_id={batch}").text
    assert f'<option value="{batch}" selected>' in page


@pytest.mark.parametrize("query, field", [
    ("status=teapot", "status"), ("from=2025-13-01", "from"), ("from=2025-02-02&to=2025-02-01", "to"),
    ("key_id=abc", "key_id"), ("to=20250101", "to"),
])
def test_a_filter_that_is_not_valid_is_refused(customer, gateway, query, field):
    response = customer.client.get(f"/console/logs?{query}")
    assert response.status_code == 400 and f"&#39;{field}&#39; must be" in response.text
    assert customer.client.get(f"/console/logs.csv?{query}").status_code == 400
    with pytest.raises(urllib.error.HTTPError) as refused:
        api_get(gateway, customer.keys["main"], f"/api/v1/usage?{query}")
    assert refused.value.code == 400


def test_pages_go_older_and_newer_by_keyset(gateway, mail_server):
    """55 requests: a first page of 50, an older one of 5, and back."""
    customer = console_customer(gateway, mail_server)
    for _ in range(55):
        chat(gateway, customer.keys["main"])
    ids = ids_of(drained_rows(gateway, customer.keys["main"], 55))
    first = customer.client.get("/console/logs").text
    assert listed_request_ids(first) == ids[:50]
    assert "Newer" not in first and "Older" in first
    older = customer.client.get(_link(first, "next")).text
    assert listed_request_ids(older) == ids[50:]
    assert "Older" not in older
    newer = customer.client.get(_link(older, "prev")).text
    assert listed_request_ids(newer) == ids[:50]
    assert ids_of(csv_rows(customer)) == ids
    customer.client.close()


def _link(page_html: str, rel: str) -> str:
    return "/console/logs" + html.unescape(re.search(rf'href="(\?[^"]+)" rel="{rel}"', page_html).group(1))


def test_the_detail_shows_how_the_charge_was_computed_and_its_ledger_entry(customer):
    reasoner = next(row for row in customer.rows if row["model"] == "sandbox-reasoner")
    response = customer.client.get(f"/console/logs/{reasoner['request_id']}")
    assert response.status_code == 200
    page = response.text
    # sandbox-reasoner: $1.10 input and $4.40 output and reasoning per 1M tokens (1,100 and 4,400 nano a token).
    for figure in ("$1.10", "$4.40", "22,000 nano", "105,600 nano", "70,400 nano", "198,000 nano = $0.000198",
                   "Charged exactly this: $0.000198", "-$0.000198", f"price version {reasoner['price_version']}"):
        assert figure in page, figure
    transactions = customer.client.get("/console/transactions").text
    transaction_id = re.search(r'href="/console/transactions\?before=(\d+)">#(\d+)', page)
    assert transaction_id and int(transaction_id.group(1)) == int(transaction_id.group(2)) + 1
    assert f"#{transaction_id.group(2)}" in transactions


def test_a_failed_request_shows_its_error_and_no_ledger_entry(customer):
    failed = next(row for row in customer.rows if row["status"] == 429)
    page = customer.client.get(f"/console/logs/{failed['request_id']}").text
    for figure in ("429", "rate_limit_exceeded", "Too many requests", "No ledger entry", "names no price version"):
        assert figure in page, figure


def test_another_accounts_requests_are_not_found_anywhere(customer, stranger, gateway):
    theirs = stranger.rows[0]["request_id"]
    theirs_key = stranger.key_ids["main"]
    assert customer.client.get(f"/console/logs/{theirs}").status_code == 404
    assert customer.client.get("/console/logs/no-such-request").status_code == 404
    for query in (f"request_id={theirs}", f"key_id={theirs_key}"):
        assert page_ids(customer, query) == []
        assert csv_rows(customer, query) == []
        assert usage_of(gateway, customer.keys["main"], query) == []
    assert theirs not in customer.client.get("/console/logs").text
    assert theirs not in customer.client.get("/console/logs.csv").text
    assert stranger.client.get(f"/console/logs/{theirs}").status_code == 200


def test_signed_out_the_log_sends_to_the_login(gateway):
    client = ConsoleClient(gateway)
    for path in ("/console/logs", "/console/logs.csv", "/console/logs/some-id"):
        response = client.get(path, follow=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/console/login?next=")
    client.close()


def test_hi_is_the_body_the_literal_costs_assume():
    assert len(json.dumps({"model": "sandbox-chat", "messages": HI})) == 74
