"""The admin Overview: the last 30 days per day, model and provider, error rates by status, the top
accounts, the drain backlog and reconcile drift, from usage records put through the real drain; the
rollup it reads equals a GROUP BY of the usage table, and a page load reads no usage rows."""
from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from datetime import datetime, timedelta
from html.parser import HTMLParser

import httpx
import pytest
from admin_client import signed_in_admin
from helpers import COST, drain_all, usage_entry, usage_record
from sqlalchemy import event, select

from control_plane import db
from control_plane import settings as settings_module
from control_plane.app import create_app
from control_plane.catalog import upstreams as catalog
from control_plane.hot import redis_keys
from control_plane.models import ReconcileRun, Usage, UsageRollup, utcnow
from control_plane.money import usd_to_nano

# conftest's test-chat at a fixed price of input $0.20, output $0.80 per 1M tokens: helpers.TOKENS
# are charged (1000 × 200e6 + 200 × 200e6 + 500 × 800e6 + 100 × 800e6) / 1e6 = 720,000 nano-USD, and
# cost the provider helpers.COST, 525,000, at the route's cost version: a margin of 195,000 each.
CHARGE = 720_000
CHART_DATA = re.compile(r'<script type="application/json" id="margin-data">(.*?)</script>', re.DOTALL)


class _Tables(HTMLParser):
    """Every <table aria-label=…> of a page: its rows' cell texts, whitespace collapsed. A table in
    a cell is a table of its own; its text is not the cell's."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._open: list[dict] = []  # the tables being read, innermost last: their rows, row and cell

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._open.append({"rows": self.tables.setdefault(dict(attrs).get("aria-label", ""), []),
                               "row": None, "cell": None})
        elif self._open and tag == "tr":
            self._open[-1]["row"] = []
        elif self._open and tag in ("td", "th") and self._open[-1]["row"] is not None:
            self._open[-1]["cell"] = []

    def handle_endtag(self, tag):
        if not self._open:
            return
        table = self._open[-1]
        if tag in ("td", "th") and table["cell"] is not None:
            table["row"].append(" ".join("".join(table["cell"]).split()))
            table["cell"] = None
        elif tag == "tr" and table["row"] is not None:
            table["rows"].append(table["row"])
            table["row"] = None
        elif tag == "table":
            self._open.pop()

    def handle_data(self, data):
        if self._open and self._open[-1]["cell"] is not None:
            self._open[-1]["cell"].append(data)


def tables(page_html: str) -> dict[str, list[list[str]]]:
    """The page's tables by aria-label, each a list of rows (the header row first)."""
    parser = _Tables()
    parser.feed(page_html)
    return parser.tables


@pytest.fixture
def fixed_price(settings, price_version):
    """test-chat at a fixed customer price (CHARGE for helpers.TOKENS); its route costs COST."""
    with db.session_scope(settings) as session:
        model = catalog.set_price(session, "test-chat", {"input": usd_to_nano("0.20"), "output": usd_to_nano("0.80")})
        return catalog.current_price(session, model.id)


def at_ms(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def charged(customer, fixed_price, cost_version, rid: str, moment: datetime) -> dict:
    """A record of test-chat at its fixed price, served by its route (CHARGE, provider cost COST)."""
    return usage_record(customer, fixed_price, rid, ts=at_ms(moment), route=str(cost_version.route_id),
                        cv=str(cost_version.id), pcost=str(COST), cost=str(CHARGE), hold="800000")


def refused(customer, rid: str, moment: datetime) -> dict:
    """A request refused before any provider (402: no provider, nothing charged)."""
    zero = {field: "0" for field in ("in", "cr", "cw", "cw1h", "out", "rsn", "cost", "hold", "pcost")}
    return usage_record(customer, None, rid, ts=at_ms(moment), status="402", basis="none", provider="", umodel="",
                        ecode="insufficient_balance", emsg="Top up.", **zero)


def put(settings, redis_client, customer, *records) -> None:
    stream = redis_keys.usage_stream(redis_keys.shard_of(customer.account.id, settings.redis_shards))
    redis_client.xadd(stream, usage_entry(*records))


@pytest.fixture
def traffic(settings, redis_client, drain, customer, make_customer, price_version, fixed_price):
    """Alice (conftest's customer): 3 charged requests (2 today, 1 yesterday) and a refused one
    today; Bob: 1 charged today; Alice 40 days ago (outside the 30 days); all drained. Then one
    more of Alice's today, left in her stream (the backlog)."""
    now = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    bob = make_customer("bob@example.com")
    put(settings, redis_client, customer,
        charged(customer, fixed_price, price_version, "a1", now),
        charged(customer, fixed_price, price_version, "a2", now + timedelta(minutes=1)),
        refused(customer, "a3", now + timedelta(minutes=2)),
        charged(customer, fixed_price, price_version, "a4", now - timedelta(days=1)),
        charged(customer, fixed_price, price_version, "a5", now - timedelta(days=40)))
    put(settings, redis_client, bob, charged(bob, fixed_price, price_version, "b1", now))
    assert drain_all(drain) == 6
    put(settings, redis_client, customer, charged(customer, fixed_price, price_version, "a6", now))
    return now, bob


def test_the_overview_shows_the_drained_usage_exactly(settings, app, traffic, customer):
    now, bob = traffic
    today, yesterday = now.date().isoformat(), (now.date() - timedelta(days=1)).isoformat()
    admin = signed_in_admin(settings, app=app)
    page = admin.get("/admin/")
    assert page.status_code == 200
    found = tables(page.text)
    head = ["Requests", "Input tokens", "Cached tokens", "Cache write tokens", "Cache write 1h tokens",
            "Output tokens", "Reasoning tokens", "Charged", "Provider cost", "Margin"]
    assert found["Per day, newest first"] == [
        ["Day (UTC)", *head],
        [today, "4", "3,000", "600", "0", "0", "1,500", "300", "$0.00216", "$0.001575", "$0.000585"],
        [yesterday, "1", "1,000", "200", "0", "0", "500", "100", "$0.00072", "$0.000525", "$0.000195"],
    ]
    assert found["Per model, most charged first"] == [
        ["Model", *head],
        ["test-chat", "5", "4,000", "800", "0", "0", "2,000", "400", "$0.00288", "$0.0021", "$0.00078"],
    ]
    assert found["Per provider, most charged first"] == [
        ["Provider", *head],
        ["test", "4", "4,000", "800", "0", "0", "2,000", "400", "$0.00288", "$0.0021", "$0.00078"],
        ["(none)", "1", "0", "0", "0", "0", "0", "0", "$0.00", "$0.00", "$0.00"],
    ]
    assert found["Requests by status"] == [["Status", "Requests", "Share"], ["200", "4", "80.00 %"],
                                           ["402", "1", "20.00 %"]]
    assert found["Top accounts by charge, last 30 days"] == [
        ["Account", "Requests", "Charged"],
        [f"alice@example.com #{customer.account.id}", "4", "$0.00216"],
        [f"bob@example.com #{bob.account.id}", "1", "$0.00072"],
    ]
    assert "20.00 % failed" in page.text
    backlog = re.search(r'id="drain-backlog">([^<]*)</div>\s*<div class="muted">([^<]*)', page.text)
    assert backlog.group(1) == "1 record"
    assert re.fullmatch(r"\$0\.00072 not in the ledger yet, the oldest since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
                        backlog.group(2)), backlog.group(2)


def test_the_chart_has_every_day_of_the_30_and_the_tables_figures(settings, app, traffic):
    now, _bob = traffic
    chart = json.loads(CHART_DATA.search(signed_in_admin(settings, app=app).get("/admin/").text).group(1))
    first = now.date() - timedelta(days=29)
    assert chart["days"] == [(first + timedelta(days=n)).isoformat() for n in range(30)]
    assert chart["time_zone"] == "UTC"
    assert chart["charged_nano"] == [0] * 28 + [CHARGE, 3 * CHARGE]
    assert chart["provider_cost_nano"] == [0] * 28 + [COST, 3 * COST]


def test_the_rollup_equals_a_group_by_of_the_usage_table(settings, traffic, redis_client, drain):
    assert drain_all(drain) == 1  # the backlog's record too
    with db.session_scope(settings) as session:
        expected = defaultdict(lambda: [0] * 9)
        for row in session.scalars(select(Usage)):
            sums = expected[(row.created_at.date(), row.model, row.provider, row.status)]
            values = (1, row.input_tokens, row.cached_input_tokens, row.cache_write_tokens, row.cache_write_1h_tokens,
                      row.output_tokens, row.reasoning_tokens, row.cost_nano, row.provider_cost_nano)
            sums[:] = [a + b for a, b in zip(sums, values, strict=True)]
        rollup = {(row.day, row.model, row.provider, row.status): [
            row.requests, row.input_tokens, row.cached_input_tokens, row.cache_write_tokens,
            row.cache_write_1h_tokens, row.output_tokens, row.reasoning_tokens, row.cost_nano,
            row.provider_cost_nano] for row in session.scalars(select(UsageRollup))}
    assert rollup == dict(expected)
    assert len(rollup) == 4  # today 200 and 402, yesterday, 40 days ago


def test_a_record_drained_twice_is_counted_once(settings, redis_client, drain, customer, fixed_price, price_version):
    record = charged(customer, fixed_price, price_version, "twice", utcnow())
    put(settings, redis_client, customer, record)
    entries = drain.read(block_ms=1)
    assert drain.record(entries) == 1
    assert drain.record(entries) == 0  # the worker died after COMMIT, before XACK
    with db.session_scope(settings) as session:
        assert [(row.requests, row.cost_nano) for row in session.scalars(select(UsageRollup))] == [(1, CHARGE)]


def test_a_page_load_reads_no_usage_rows(settings, app, traffic):
    statements = []

    def seen(_conn, _cursor, statement, _parameters, _context, _many):
        statements.append(statement)

    engine = db.engine_for(settings.database_url)
    admin = signed_in_admin(settings, app=app)
    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert admin.get("/admin/").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    usage_reads = [s for s in statements if re.search(r"\bFROM usage\b", s)]
    # Only the backlog's look-up of the stream's request ids (the unique index), never a scan.
    assert usage_reads and all("usage.request_id IN" in s for s in usage_reads), usage_reads


def test_run_reconcile_now_stores_a_run_and_the_page_shows_it(settings, app, traffic, redis_client, drain):
    admin = signed_in_admin(settings, app=app)
    page = admin.get("/admin/")
    assert "Reconcile has not been run yet." in page.text and "Run reconcile now" in page.text
    before = time.time()
    page = admin.post_form("/admin/reconcile", {})
    assert page.status_code == 200 and str(page.url).endswith("/admin/#reconcile")
    with db.session_scope(settings) as session:
        run = session.scalar(select(ReconcileRun))
        assert (run.actor, run.accounts, run.undrained, run.quarantined, run.violations) == (
            f"admin {admin.email}", 3, 1, 0, 0)
        assert run.started_at.timestamp() >= before - 1
    # Alice's and Bob's Redis balances and key spends were published before any usage, which was
    # never debited in Redis (the records were put in the streams by hand): they drift.
    assert (run.drifting, run.keys_drifting, run.ok) == (2, 2, False)
    summary = tables(page.text)["The last reconcile run"]
    assert summary[0] == ["Accounts checked", "3"]
    assert summary[1] == ["Accounts drifting", "2"]
    assert summary[6] == ["Records not drained yet", "1"]
    assert f"Reconcile run {run.id}: 2 accounts drifting, 2 keys drifting." in page.text
    assert f"by admin {admin.email}" in page.text


def test_a_reconcile_that_agrees_is_shown_so(settings, app):
    admin = signed_in_admin(settings, app=app)
    page = admin.post_form("/admin/reconcile", {})
    assert "everything agrees." in page.text
    assert "Redis and the ledger agree." in page.text
    assert tables(page.text)["The last reconcile run"][0] == ["Accounts checked", "1"]  # the admin's own


def test_the_reconcile_button_needs_the_forms_token(settings, app):
    admin = signed_in_admin(settings, app=app)
    assert admin.post_form("/admin/reconcile", {}, csrf=False).status_code == 403
    with db.session_scope(settings) as session:
        assert session.scalar(select(ReconcileRun)) is None


def test_an_empty_gateway_has_an_empty_overview(settings, app):
    page = signed_in_admin(settings, app=app).get("/admin/")
    assert page.status_code == 200
    assert page.text.count("No requests in the last 30 days.") == 4
    assert "No account was charged in the last 30 days." in page.text
    assert "every usage record is in SQL" in page.text


def test_the_overview_is_for_admins_only(settings, app, customer):
    from console_client import ConsoleClient

    visitor = ConsoleClient(app=app)
    response = visitor.get("/admin/", follow=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/admin/login")
    response = visitor.post_form("/admin/reconcile", {}, csrf=False, follow=False)
    assert response.status_code in (303, 403)
    with db.session_scope(settings) as session:
        assert session.scalar(select(ReconcileRun)) is None


def test_without_redis_the_overview_shows_sqls_figures_and_says_the_backlog_is_unknown(settings, app, tollgate_env,
                                                                                       traffic):
    admin = signed_in_admin(settings, app=app)  # signing in needs Redis (its throttle); then it goes away
    closed = settings_module.load({**tollgate_env, "TOLLGATE_REDIS_URL": "redis://127.0.0.1:9/0"})
    admin.http = httpx.Client(transport=httpx.WSGITransport(app=create_app({"TESTING": True,
                                                                          "TOLLGATE_SETTINGS": closed})),
                              base_url=admin.http.base_url, cookies=admin.http.cookies, follow_redirects=True)
    page = admin.get("/admin/")
    assert page.status_code == 200
    assert tables(page.text)["Per model, most charged first"][1][:2] == ["test-chat", "5"]
    assert re.search(r'id="drain-backlog">unknown</div>\s*<div class="muted">Redis did not answer: ', page.text)
    page = admin.post_form("/admin/reconcile", {})
    assert "Reconcile did not run: Redis did not answer" in page.text
    with db.session_scope(closed) as session:
        assert session.scalar(select(ReconcileRun)) is None
