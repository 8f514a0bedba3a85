"""The admin API's audit log (/api/admin/v1/audit), in-process: the page's filters and entries as
JSON, keyset pages, a clear 400 for a bad filter, read by read-only keys, never by customer keys."""
from __future__ import annotations

import pytest
from admin_client import make_admin_key
from test_audit_log import november  # noqa: F401 (fixture)

from control_plane import db
from control_plane.accounts import accounts, api_keys

API = "/api/admin/v1"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_entries_as_json(client, settings, november):  # noqa: F811
    body = client.get(f"{API}/audit?to=2026-11-30", headers=bearer(make_admin_key(settings, read_only=True))).json
    rescan, post, suspend, create = november[::-1]
    assert body["has_more"] is False and body["next_before"] is None
    assert body["data"] == [
        {"id": rescan, "created_at": "2026-11-04T09:00:00.000Z", "actor": "cli root", "actor_account_id": None,
         "ip": None, "action": "rescan", "entity": "chain_cursor", "entity_id": "tron",
         "before": {"next_block": 126}, "after": {"next_block": 90}, "reason": ""},
        {"id": post, "created_at": "2026-11-03T12:00:00.000Z", "actor": "admin key 3 (ops@example.com)",
         "actor_account_id": 7, "ip": None, "action": "post", "entity": "ledger_transaction", "entity_id": "42",
         "before": {"balance_nano": 10_000_000_000},
         "after": {"account_id": 7, "amount_nano": -2_500_000_000, "balance_nano": 7_500_000_000,
                   "kind": "adjustment"}, "reason": "goodwill"},
        {"id": suspend, "created_at": "2026-11-02T11:00:00.000Z", "actor": "admin ops@example.com",
         "actor_account_id": 7, "ip": "203.0.113.9", "action": "update", "entity": "account", "entity_id": "7",
         "before": {"status": "active"}, "after": {"status": "suspended"}, "reason": "chargeback"},
        {"id": create, "created_at": "2026-11-01T10:00:00.000Z", "actor": "cli root", "actor_account_id": None,
         "ip": None, "action": "create", "entity": "provider", "entity_id": "1", "before": None,
         "after": {"api_key_encrypted": "[redacted]", "name": "openai"}, "reason": ""},
    ]


@pytest.mark.parametrize(("query", "actions"), [
    ("actor=ops%40EXAMPLE", ["post", "update"]),
    ("entity=account&entity_id=7", ["update"]),
    ("action=create", ["create"]),
    ("from=2026-11-02&to=2026-11-03", ["post", "update"]),
    ("since=2026-11-03T12:00:00Z", ["rescan", "post"]),
])
def test_the_filters(client, settings, november, query, actions):  # noqa: F811
    body = client.get(f"{API}/audit?{query}&to=2026-11-30", headers=bearer(make_admin_key(settings))).json
    assert [entry["action"] for entry in body["data"]] == actions


def test_keyset_pages(client, settings, november):  # noqa: F811
    key = make_admin_key(settings)
    page = client.get(f"{API}/audit?to=2026-11-30&limit=3", headers=bearer(key)).json
    assert [entry["action"] for entry in page["data"]] == ["rescan", "post", "update"] and page["has_more"] is True
    rest = client.get(f"{API}/audit?to=2026-11-30&limit=3&before={page['next_before']}", headers=bearer(key)).json
    assert [entry["action"] for entry in rest["data"]] == ["create"] and rest["has_more"] is False


@pytest.mark.parametrize(("query", "message"), [
    ("from=2026-11-31", "'from' must be a UTC date as YYYY-MM-DD."),
    ("from=2026-11-05&to=2026-11-01", "'to' must be the same day as 'from' or later."),
    ("since=soon", "'since' must be a UTC date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM[:SS][Z or ±HH:MM])."),
    ("actor=" + "a" * 201, "'actor' must be at most 200 characters."),
    ("limit=0", "'limit' must be an integer from 1 to 100."),
])
def test_a_bad_filter_is_a_clear_400(client, settings, query, message):
    response = client.get(f"{API}/audit?{query}", headers=bearer(make_admin_key(settings)))
    assert (response.status_code, response.json["error"]["code"], response.json["error"]["message"]) == (
        400, "invalid_parameter", message)


def test_a_customer_key_never_reads_the_log(client, settings, november):  # noqa: F811
    with db.session_scope(settings) as session:
        _key, customer_key = api_keys.create_key(session, accounts.create_account(session, "c@example.com"), "k")
    response = client.get(f"{API}/audit", headers=bearer(customer_key))
    assert (response.status_code, response.json["error"]["code"]) == (401, "admin_key_required")
