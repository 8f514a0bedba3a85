"""The console's dashboard: balance, spend and requests from usage_daily, the chart's data (whose
totals equal the ledger's usage entries), its table, and the last requests."""
from __future__ import annotations

import html
import json
import re
import urllib.request

import pytest
from console_client import ConsoleClient, signed_in_client
from console_usage import (
    CHAT_COST,
    REASONER_COST,
    chat,
    console_customer,
    drained_rows,
    listed_request_ids,
    record_failed,
)
from helpers import api_get

SPEND_DATA = re.compile(r'<script type="application/json" id="spend-data">(.*?)</script>', re.DOTALL)
# 11 sandbox-chat requests and one to sandbox-reasoner (console_usage.py): 11 × 17,250 + 198,000.
SPENT = 387_750
assert SPENT == 11 * CHAT_COST + REASONER_COST


@pytest.fixture(scope="module")
def customer(gateway, mail_server):
    """$5, 11 requests to sandbox-chat, one to sandbox-reasoner and a failed one (nothing billed)."""
    customer = console_customer(gateway, mail_server)
    key = customer.keys["main"]
    chat(gateway, key, "sandbox-reasoner")
    for _ in range(11):
        chat(gateway, key)
    drained_rows(gateway, key, 12)
    record_failed(gateway, customer, "main", f"failed-{customer.account_id}", 503, "provider_unavailable",
                  "The provider is overloaded.")
    customer.rows = drained_rows(gateway, key, 13)
    yield customer
    customer.client.close()


def chart_of(page_html: str) -> dict:
    return json.loads(SPEND_DATA.search(page_html).group(1))  # as the browser reads it: no entities


def usage_ledger_total(gateway, key: str) -> int:
    """Σ of the account's usage ledger entries (/api/v1/transactions, every page)."""
    total, before = 0, None
    while True:
        page = api_get(gateway, key, "/api/v1/transactions?limit=100" + (f"&before={before}" if before else ""))
        total += sum(item["amount_nano"] for item in page["transactions"] if item["type"] == "usage")
        if not page["has_more"]:
            return total
        before = page["next_before"]


def test_the_charts_totals_equal_the_ledger(customer, gateway):
    page = customer.client.get("/console/").text
    chart = chart_of(page)
    assert chart["time_zone"] == "UTC" and len(chart["days"]) == 30
    series = {item["model"]: item["cost_nano"] for item in chart["series"]}
    assert {model: sum(costs) for model, costs in series.items()} == {"sandbox-chat": 189_750,
                                                                       "sandbox-reasoner": 198_000}
    assert chart["total_nano"] == SPENT == -usage_ledger_total(gateway, customer.keys["main"])
    # Everything was spent today, the chart's last day.
    assert [sum(costs[-1] for costs in series.values())] == [SPENT]
    assert all(cost == 0 for costs in series.values() for cost in costs[:-1])


def test_balance_spend_and_requests(customer, gateway):
    page = customer.client.get("/console/").text
    assert api_get(gateway, customer.keys["main"], "/api/v1/balance")["balance_nano"] == 5_000_000_000 - SPENT
    assert '<div class="value" id="balance">$4.99961225</div>' in page
    for label in ("today", "last 7 days", "last 30 days"):
        card = re.search(rf"Spend, {label} \(UTC\)</div>\s*<div class=\"value\">([^<]+)</div>\s*"
                         r"<div class=\"muted\">([^<]+)</div>", page)
        assert card and card.groups() == ("$0.00038775", "13 requests, 1 failed"), label


def test_the_table_holds_the_charts_figures(customer):
    page = customer.client.get("/console/").text
    table = page[page.index('aria-label="Daily spend by model (UTC)"'):]
    row = re.search(r'<tr><td class="mono">(\d{4}-\d\d-\d\d)</td>(.*?)</tr>', table).groups()
    assert row[0] == chart_of(page)["days"][-1]
    # Columns by the models' 30-day spend, most first: sandbox-reasoner, sandbox-chat, the total.
    assert re.findall(r'<td class="num">([^<]+)</td>', row[1]) == ["$0.000198", "$0.00018975", "$0.00038775"]


def test_the_last_ten_requests(customer):
    page = customer.client.get("/console/").text
    last = page[page.index("<h2>Last requests</h2>"):]
    assert listed_request_ids(last) == [row["request_id"] for row in customer.rows[:10]]
    assert "provider_unavailable" in last and "$0.00001725" in last


def test_the_chart_script_and_its_library_are_served_with_long_cache_headers(customer, gateway):
    page = customer.client.get("/console/").text
    for path in re.findall(r'<script src="([^"]+)"></script>', page):
        assert path.startswith(("/static/vendor/chart.js/chart.min.js?v=", "/static/chart_money.js?v=",
                                "/static/dashboard.js?v="))
        with urllib.request.urlopen(gateway.url + html.unescape(path), timeout=10) as response:
            assert response.status == 200 and "max-age=31536000" in response.headers["Cache-Control"]


def test_an_account_without_usage_and_another_accounts_usage(customer, gateway, mail_server):
    client = signed_in_client(gateway, mail_server)
    page = client.get("/console/").text
    assert "No spend in the last 30 days." in page and "No requests yet." in page
    assert chart_of(page)["series"] == [] and chart_of(page)["total_nano"] == 0
    assert '<div class="value" id="balance">$0.00</div>' in page
    assert customer.rows[0]["request_id"] not in page
    client.close()


def test_signed_out_the_dashboard_sends_to_the_login(gateway):
    client = ConsoleClient(gateway)
    response = client.get("/console/", follow=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/console/login?next=")
    client.close()
