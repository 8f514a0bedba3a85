"""The admin API's deposits (/api/admin/v1/deposits, /deposits/rescan), in-process: every deposit
with its account, state and confirmations, filtered and paged; a rescan moves the cursor back,
audited as the key's; bad input is a clear 400; read-only and customer keys are refused."""
from __future__ import annotations

import json

import pytest
from admin_client import make_admin, make_admin_key
from sqlalchemy import select
from test_admin_deposits import listed  # noqa: F401 (fixture)

from control_plane import db
from control_plane.accounts import accounts, api_keys
from control_plane.models import AuditEntry, ChainCursor

API = "/api/admin/v1"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_deposits_newest_first_with_state_and_confirmations(client, settings, listed):  # noqa: F811
    alice, bob = listed
    body = client.get(f"{API}/deposits", headers=bearer(make_admin_key(settings, read_only=True))).json
    assert [(row["chain"], row["email"], row["account_id"], row["amount_nano"], row["block_number"],
             row["confirmations"], row["status"], row["state"]) for row in body["data"]] == [
        ("tron", "alice@example.com", alice, 40 * 10**9, 499, 1, "orphaned", "orphaned"),
        ("tron", "bob@example.com", bob, 3 * 10**9, 450, 50, "below_minimum", "below_minimum"),
        ("polygon", "bob@example.com", bob, 7 * 10**9, 1005, 0, "seen", "pending"),
        ("polygon", "alice@example.com", alice, 10 * 10**9, 990, 10, "confirmed", "pending"),
        ("polygon", "alice@example.com", alice, 25 * 10**9, 900, 100, "credited", "credited"),
    ]
    first = body["data"][0]
    assert (first["tx_hash"], first["log_index"], first["amount"], first["amount_base_units"],
            first["created_at"]) == (f"{5:064x}", 2, 40, "40000000", "2026-11-30T08:05:00.000Z")
    assert (body["has_more"], body["next_before"], body["rescans"]) == (False, None, [])


def test_deposits_filtered_and_paged(client, settings, listed):  # noqa: F811
    key = make_admin_key(settings)
    page = client.get(f"{API}/deposits?chain=polygon&state=pending&limit=1", headers=bearer(key)).json
    assert [row["block_number"] for row in page["data"]] == [1005] and page["has_more"] is True
    rest = client.get(f"{API}/deposits?chain=polygon&state=pending&before={page['next_before']}",
                      headers=bearer(key)).json
    assert [row["block_number"] for row in rest["data"]] == [990] and rest["has_more"] is False


@pytest.mark.parametrize(("query", "message"), [
    ("chain=ethereum", "'chain' must be one of tron, bsc, polygon."),
    ("state=seen", "'state' must be one of pending, credited, below_minimum, orphaned."),
    ("limit=500", "'limit' must be an integer from 1 to 100."),
    ("before=x", "'before' must be an integer from 1 to 9223372036854775807."),
])
def test_a_bad_filter_is_a_clear_400(client, settings, query, message):
    response = client.get(f"{API}/deposits?{query}", headers=bearer(make_admin_key(settings)))
    assert (response.status_code, response.json["error"]["code"], response.json["error"]["message"]) == (
        400, "invalid_parameter", message)


def test_a_rescan_moves_the_cursor_back_audited_as_the_key(client, settings, listed):  # noqa: F811
    email = make_admin(settings)
    key = make_admin_key(settings, email)
    response = client.post(f"{API}/deposits/rescan", headers=bearer(key), json={"chain": "polygon", "from_block": 950})
    assert response.status_code == 200
    assert response.json == {"chain": "polygon", "next_block_before": 1000, "next_block": 950}
    with db.session_scope(settings) as session:
        assert session.get(ChainCursor, "polygon").next_block == 950
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "rescan"))
        assert (entry.entity, entry.entity_id, json.loads(entry.before), json.loads(entry.after)) == (
            "chain_cursor", "polygon", {"next_block": 1000}, {"next_block": 950})
        assert entry.actor.startswith("admin key ") and entry.actor.endswith(f" ({email})")
    body = client.get(f"{API}/deposits?chain=polygon", headers=bearer(key)).json
    assert [row["confirmations"] for row in body["data"]] == [0, 0, 50]  # counted from the cursor now
    rescan = body["rescans"][0]
    assert {name: rescan[name] for name in ("chain", "from_block", "target_block", "next_block", "blocks",
                                            "blocks_scanned", "done", "percent", "text", "asked_by")} == {
        "chain": "polygon", "from_block": 950, "target_block": 1000, "next_block": 950, "blocks": 50,
        "blocks_scanned": 0, "done": False, "percent": 0, "text": "Scanning blocks 950 to 999 again: below block 950, 0 %.",
        "asked_by": entry.actor}


@pytest.mark.parametrize(("body", "code", "message"), [
    (b"not json", "invalid_request", 'The body must be a JSON object, e.g. {"chain": "polygon", "from_block": 123}.'),
    (b"[1]", "invalid_request", 'The body must be a JSON object, e.g. {"chain": "polygon", "from_block": 123}.'),
    (b'{"from_block": 5}', "invalid_parameter", "'chain' must be a chain name, one of tron, bsc, polygon."),
    (b'{"chain": "polygon"}', "invalid_parameter", "'from_block' must be a block number (an integer)."),
    (b'{"chain": "polygon", "from_block": "5"}', "invalid_parameter",
     "'from_block' must be a block number (an integer)."),
    (b'{"chain": "polygon", "from_block": 5.0}', "invalid_parameter",
     "'from_block' must be a block number (an integer)."),
    (b'{"chain": "polygon", "from_block": true}', "invalid_parameter",
     "'from_block' must be a block number (an integer)."),
    (b'{"chain": "polygon", "from_block": -1}', "invalid_request",
     "The block must be a number from 0 to 9223372036854775807."),
    (b'{"chain": "ethereum", "from_block": 5}', "invalid_request",
     "There is no chain 'ethereum': it is one of tron, bsc, polygon."),
    (b'{"chain": "bsc", "from_block": 5}', "invalid_request",
     "bsc has not been scanned yet: its watcher starts at its start block by itself."),
    (b'{"chain": "polygon", "from_block": 1000}', "invalid_request",
     ("polygon is scanned below block 1000 only: blocks from 1000 on are not scanned yet, and its watcher scans "
      "them anyway.")),
])
def test_a_rescan_that_cannot_be_made_is_a_clear_400(client, settings, listed, body, code, message):  # noqa: F811
    response = client.post(f"{API}/deposits/rescan", headers={**bearer(make_admin_key(settings)),
                                                              "Content-Type": "application/json"}, data=body)
    assert (response.status_code, response.json["error"]["code"], response.json["error"]["message"]) == (
        400, code, message)
    with db.session_scope(settings) as session:
        assert session.get(ChainCursor, "polygon").next_block == 1000
        assert session.scalar(select(AuditEntry).where(AuditEntry.action == "rescan")) is None


def test_read_only_and_customer_keys_cannot_rescan(client, settings, listed):  # noqa: F811
    rescan = {"chain": "polygon", "from_block": 950}
    response = client.post(f"{API}/deposits/rescan", headers=bearer(make_admin_key(settings, read_only=True)),
                           json=rescan)
    assert (response.status_code, response.json["error"]["code"]) == (403, "admin_key_read_only")
    with db.session_scope(settings) as session:
        _key, customer_key = api_keys.create_key(session, accounts.require_by_email(session, "alice@example.com"), "k")
    for method, path in (("GET", "/deposits"), ("POST", "/deposits/rescan")):
        response = client.open(f"{API}{path}", method=method, headers=bearer(customer_key), json=rescan)
        assert (response.status_code, response.json["error"]["code"]) == (401, "admin_key_required")
    with db.session_scope(settings) as session:
        assert session.get(ChainCursor, "polygon").next_block == 1000
