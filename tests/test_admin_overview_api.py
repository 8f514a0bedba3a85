"""The admin API's overview and reconcile runs (/api/admin/v1/overview, /reconcile/runs), in-process:
the overview page's figures as exact JSON, runs stored as the key's, read-only and customer keys
refused."""
from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

from admin_client import make_admin, make_admin_key
from helpers import COST
from sqlalchemy import select
from test_admin_overview import CHARGE, fixed_price, traffic  # noqa: F401 (fixtures)

from control_plane import db
from control_plane.accounts import accounts, api_keys
from control_plane.models import ReconcileRun
from control_plane.money import nano_to_decimal

API = "/api/admin/v1"
TOKENS = {"input": 4000, "cached_input": 800, "cache_write": 0, "cache_write_1h": 0, "output": 2000, "reasoning": 400}
NO_TOKENS = dict.fromkeys(TOKENS, 0)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def money(name: str, nano: int) -> dict:
    return {name: nano_to_decimal(nano), f"{name}_nano": nano}


def totals(requests: int, tokens: dict, charged: int, provider_cost: int) -> dict:
    return {"requests": requests, "tokens": tokens, **money("charged", charged),
            **money("provider_cost", provider_cost), **money("margin", charged - provider_cost)}


def decimals(response) -> dict:
    """The body with its numbers as Python reads exact JSON: decimals as Decimal."""
    return json.loads(response.get_data(as_text=True), parse_float=Decimal)


def test_the_overview_as_json(client, settings, traffic, customer):  # noqa: F811
    now, bob = traffic
    response = client.get(f"{API}/overview", headers=bearer(make_admin_key(settings, read_only=True)))
    assert response.status_code == 200
    body = decimals(response)
    first = now.date() - timedelta(days=29)
    assert (body["from"], body["to"], body["time_zone"]) == (first.isoformat(), now.date().isoformat(), "UTC")
    assert body["total"] == {**totals(5, TOKENS, 4 * CHARGE, 4 * COST), "errors": 1, "error_rate": Decimal("20.00")}
    assert [row["day"] for row in body["days"]] == [(first + timedelta(days=n)).isoformat() for n in range(30)]
    assert body["days"][:28] == [{"day": row["day"], **totals(0, NO_TOKENS, 0, 0)} for row in body["days"][:28]]
    one = {"input": 1000, "cached_input": 200, "cache_write": 0, "cache_write_1h": 0, "output": 500, "reasoning": 100}
    assert body["days"][28:] == [
        {"day": (now.date() - timedelta(days=1)).isoformat(), **totals(1, one, CHARGE, COST)},
        {"day": now.date().isoformat(), **totals(4, {name: 3 * n for name, n in one.items()}, 3 * CHARGE, 3 * COST)},
    ]
    assert body["models"] == [{"model": "test-chat", **totals(5, TOKENS, 4 * CHARGE, 4 * COST)}]
    assert body["providers"] == [{"provider": "test", **totals(4, TOKENS, 4 * CHARGE, 4 * COST)},
                                 {"provider": "", **totals(1, NO_TOKENS, 0, 0)}]
    assert body["statuses"] == [{"status": 200, "requests": 4, "share": Decimal("80.00")},
                                {"status": 402, "requests": 1, "share": Decimal("20.00")}]
    assert body["top_accounts"] == [
        {"account_id": customer.account.id, "email": "alice@example.com", "requests": 4, **money("charged", 3 * CHARGE)},
        {"account_id": bob.account.id, "email": "bob@example.com", "requests": 1, **money("charged", CHARGE)}]
    backlog = body["drain_backlog"]
    assert {key: backlog[key] for key in ("records", "cost", "cost_nano")} == {
        "records": 1, "cost": Decimal("0.00072"), "cost_nano": 720_000}
    assert backlog["oldest_at"].endswith("Z")
    assert (body["quarantined_records"], body["reconcile"]) == (0, None)
    assert '"charged": 0.00288, "charged_nano": 2880000' in response.get_data(as_text=True)


def test_a_reconcile_run_is_made_stored_and_listed(client, settings):
    email = make_admin(settings)
    key = make_admin_key(settings, email)
    response = client.post(f"{API}/reconcile/runs", headers=bearer(key))
    assert response.status_code == 201
    run = response.json
    with db.session_scope(settings) as session:
        stored = session.scalar(select(ReconcileRun))
    assert (run["id"], run["actor"], run["ok"], run["accounts"], run["drifting"], run["drift_nano"]) == (
        stored.id, stored.actor, True, 1, 0, 0)
    assert stored.actor.startswith("admin key ") and stored.actor.endswith(f" ({email})")
    assert run["report"]["ok"] is True and run["report"]["drifting"] == 0
    assert run["findings"] == {"drifting": [], "keys_drifting": [], "violations": []}

    listed = client.get(f"{API}/reconcile/runs", headers=bearer(make_admin_key(settings, read_only=True))).json
    assert [item["id"] for item in listed["data"]] == [run["id"]] and listed["has_more"] is False
    overview = client.get(f"{API}/overview", headers=bearer(key)).json
    assert {name: overview["reconcile"][name] for name in ("id", "actor", "ok")} == {
        "id": run["id"], "actor": stored.actor, "ok": True}


def test_a_read_only_key_cannot_run_reconcile_nor_a_customer_key_read(client, settings):
    response = client.post(f"{API}/reconcile/runs", headers=bearer(make_admin_key(settings, read_only=True)))
    assert (response.status_code, response.json["error"]["code"]) == (403, "admin_key_read_only")
    with db.session_scope(settings) as session:
        account = accounts.create_account(session, "customer@example.com")
        _key, customer_key = api_keys.create_key(session, account, "k")
    for method, path in (("GET", "/overview"), ("POST", "/reconcile/runs"), ("GET", "/reconcile/runs")):
        response = client.open(f"{API}{path}", method=method, headers=bearer(customer_key))
        assert (response.status_code, response.json["error"]["code"]) == (401, "admin_key_required")
    with db.session_scope(settings) as session:
        assert session.scalar(select(ReconcileRun)) is None


def test_runs_are_paged_newest_first(client, settings):
    key = make_admin_key(settings)
    ids = [client.post(f"{API}/reconcile/runs", headers=bearer(key)).json["id"] for _ in range(3)]
    page = client.get(f"{API}/reconcile/runs?limit=2", headers=bearer(key)).json
    assert [item["id"] for item in page["data"]] == ids[:0:-1] and page["has_more"] is True
    rest = client.get(f"{API}/reconcile/runs?limit=2&before={page['next_before']}", headers=bearer(key)).json
    assert [item["id"] for item in rest["data"]] == ids[:1] and rest["has_more"] is False
    response = client.get(f"{API}/reconcile/runs?limit=0", headers=bearer(key))
    assert (response.status_code, response.json["error"]["message"]) == (400, "'limit' must be an integer from 1 to 100.")
