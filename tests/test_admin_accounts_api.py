"""The admin API's accounts endpoints (/api/admin/v1/accounts…, /keys/…), in-process: search and
paging, an account with its keys, payments and ledger; credits and debits (never below zero),
payment refunds (once per refunds_seen), suspension, key revocation and limits reaching Redis;
read-only and customer keys refused; bad input a clear 400 or 404, never a 500."""
from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

import pytest
from admin_client import make_admin, make_admin_key
from conftest import _free_port
from helpers import redis_balance, sql_balance
from sqlalchemy import func, select

from control_plane import db
from control_plane.accounts import accounts
from control_plane.hot import redis_keys
from control_plane.models import Account, AuditEntry, LedgerTransaction, utcnow

API = "/api/admin/v1"


@pytest.fixture
def admin_email(settings):
    return make_admin(settings)


@pytest.fixture
def headers(settings, admin_email):
    return {"Authorization": f"Bearer {make_admin_key(settings, admin_email)}"}


@pytest.fixture
def alice(make_customer):
    return make_customer("alice@shop.test", "10")


def call(client, headers, method: str, path: str, body=None, raw: bytes | None = None):
    """(status, JSON answer); body is sent as JSON, raw as it is."""
    data = raw if raw is not None else None if body is None else json.dumps(body)
    response = client.open(f"{API}{path}", method=method, headers={**headers, "Content-Type": "application/json"},
                           data=data)
    return response.status_code, json.loads(response.get_data(as_text=True), parse_float=Decimal)


def error(answer: dict) -> tuple[str, str]:
    return answer["error"]["code"], answer["error"]["message"]


def ledger_count(settings) -> int:
    with db.read_session(settings) as session:
        return session.scalar(select(func.count()).select_from(LedgerTransaction))


# -- reading ---------------------------------------------------------------------------------------


def test_accounts_are_searched_and_paged(client, settings, headers, make_customer):
    make_customer("alice@shop.test", "10")
    make_customer("bob@shop.test", None)
    carol = make_customer("carol@other.org", "1")
    status, page = call(client, headers, "GET", "/accounts?q=SHOP&limit=1")
    assert status == 200 and [item["email"] for item in page["data"]] == ["bob@shop.test"]
    assert page["has_more"] is True
    status, older = call(client, headers, "GET", f"/accounts?q=SHOP&limit=1&before={page['next_before']}")
    assert [item["email"] for item in older["data"]] == ["alice@shop.test"] and older["has_more"] is False
    assert older["data"][0] | {"id": 0, "created_at": ""} == {
        "id": 0, "email": "alice@shop.test", "status": "active", "is_admin": False, "balance": 10,
        "balance_nano": 10_000_000_000, "active_keys": 1, "created_at": "", "deleted_at": None}
    _, by_id = call(client, headers, "GET", f"/accounts?q=%23{carol.account.id}")
    assert [item["email"] for item in by_id["data"]] == ["carol@other.org"]
    _, none = call(client, headers, "GET", "/accounts?status=suspended")
    assert none["data"] == []


@pytest.mark.parametrize(("query", "name"), [("status=gone", "status"), ("limit=0", "limit"), ("before=x", "before"),
                                             ("q=" + "x" * 321, "q")])
def test_a_bad_list_parameter_is_a_400(client, headers, query, name):
    status, answer = call(client, headers, "GET", f"/accounts?{query}")
    assert status == 400 and error(answer)[0] == "invalid_parameter" and f"'{name}'" in error(answer)[1]


def test_an_account_comes_with_its_keys_payments_and_ledger(client, settings, headers, alice):
    status, answer = call(client, headers, "GET", f"/accounts/{alice.account.id}")
    assert status == 200
    assert (answer["email"], answer["balance"], answer["balance_nano"]) == ("alice@shop.test", 10, 10_000_000_000)
    [key] = answer["keys"]
    assert (key["id"], key["prefix"], key["status"], key["spent_nano"]) == (alice.key.id, alice.key.prefix,
                                                                            "active", 0)
    [payment] = answer["payments"]
    assert payment | {"created_at": ""} == {
        "transaction_id": payment["transaction_id"], "kind": "card", "description": "Test deposit", "amount": 10,
        "amount_nano": 10_000_000_000, "refunded": 0, "refunded_nano": 0, "refundable": 10,
        "refundable_nano": 10_000_000_000, "refunds": 0, "deposit": None, "created_at": ""}
    assert [(item["type"], item["amount_nano"]) for item in answer["transactions"]] == [("deposit", 10_000_000_000)]


def test_an_unknown_account_or_key_is_a_404(client, headers):
    for method, path in (("GET", "/accounts/999999"), ("GET", "/accounts/99999999999"),
                         ("POST", "/accounts/999999/credit"), ("POST", "/accounts/999999/suspend"),
                         ("POST", "/accounts/999999/refunds"), ("POST", "/keys/999999/revoke"),
                         ("PATCH", "/keys/99999999999")):
        status, answer = call(client, headers, method, path, {"amount": "1", "reason": "r", "payment": 1})
        assert (status, error(answer)[0]) == (404, "not_found"), (method, path)


# -- who may --------------------------------------------------------------------------------------


def test_a_read_only_key_reads_but_changes_nothing(client, settings, admin_email, alice):
    read_only = {"Authorization": f"Bearer {make_admin_key(settings, admin_email, read_only=True)}"}
    assert call(client, read_only, "GET", f"/accounts/{alice.account.id}")[0] == 200
    for method, path in (("POST", f"/accounts/{alice.account.id}/credit"), ("POST", f"/keys/{alice.key.id}/revoke"),
                         ("PATCH", f"/keys/{alice.key.id}"), ("POST", f"/accounts/{alice.account.id}/suspend")):
        status, answer = call(client, read_only, method, path, {"amount": "1", "reason": "r"})
        assert (status, error(answer)[0]) == (403, "admin_key_read_only"), path
    assert sql_balance(settings, alice.account.id) == 10_000_000_000


def test_a_customer_key_is_refused(client, settings, alice):
    customer = {"Authorization": f"Bearer {alice.plaintext}"}
    for method, path in (("GET", "/accounts"), ("POST", f"/accounts/{alice.account.id}/credit")):
        status, answer = call(client, customer, method, path, {"amount": "1", "reason": "r"})
        assert (status, error(answer)[0]) == (401, "admin_key_required")


# -- credits and debits ----------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "nano"), [("2.5", 2_500_000_000), ("-0.000000001", -1), (3, 3_000_000_000),
                                               ("1e-3", 1_000_000)])
def test_a_credit_or_debit_moves_exactly_the_amount(client, settings, headers, redis_client, alice, amount, nano):
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/credit",
                          {"amount": amount, "reason": "correction"})
    assert status == 201, answer
    assert answer["transaction"] | {"id": 0, "created_at": ""} == {
        "id": 0, "type": "adjustment", "amount": Decimal(nano).scaleb(-9), "amount_nano": nano,
        "description": "correction", "created_at": ""}
    assert answer["account"]["balance_nano"] == 10_000_000_000 + nano and answer["live"] is True
    assert sql_balance(settings, alice.account.id) == redis_balance(settings, redis_client, alice.account.id) == \
        10_000_000_000 + nano


def test_an_exact_json_number_is_taken_digit_for_digit(client, settings, headers, alice):
    raw = b'{"amount": 0.123456789, "reason": "exact"}'
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/credit", raw=raw)
    assert status == 201 and answer["transaction"]["amount_nano"] == 123_456_789
    response = client.post(f"{API}/accounts/{alice.account.id}/credit", headers=headers, data=raw)
    assert '"amount": 0.123456789, "amount_nano": 123456789' in response.get_data(as_text=True)


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"amount": "0.0000000001", "reason": "r"}, "amount", "at most 9 decimals"),
    ({"amount": "1e30", "reason": "r"}, "amount", "at most $1000000.00"),
    ({"amount": 10**30, "reason": "r"}, "amount", "at most $1000000.00"),
    ({"amount": "-1000000.000000001", "reason": "r"}, "amount", "at most $1000000.00"),
    ({"amount": "ten", "reason": "r"}, "amount", "Give a USD amount"),
    ({"amount": True, "reason": "r"}, "amount", "Give a USD amount"),
    ({"amount": ["1"], "reason": "r"}, "amount", "Give a USD amount"),
    ({"amount": "0", "reason": "r"}, "amount", "must not be zero"),
    ({"reason": "r"}, "amount", "is required"),
    ({"amount": "1"}, "reason", "Give a reason"),
    ({"amount": "1", "reason": "   "}, "reason", "Give a reason"),
    ({"amount": "1", "reason": 7}, "reason", "Give a reason"),
    ({"amount": "1", "reason": "x" * 401}, "reason", "at most 400 characters"),
    ({"amount": "1", "reason": "r", "note": "x"}, "note", "one of amount, reason"),
])
def test_a_bad_credit_is_a_clear_400_and_changes_nothing(client, settings, headers, alice, body, field, message):
    before = ledger_count(settings)
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/credit", body)
    code, text = error(answer)
    assert (status, code) == (400, "invalid_parameter") and f"'{field}'" in text and message in text, text
    assert ledger_count(settings) == before


@pytest.mark.parametrize("raw", [b"{", b"[1]", b'"x"', b"NaN", b'{"amount": NaN, "reason": "r"}',
                                 b'{"amount": Infinity, "reason": "r"}', b"\xff"])
def test_a_body_that_is_not_a_json_object_is_a_400(client, headers, alice, raw):
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/credit", raw=raw)
    assert status == 400 and error(answer)[0] in ("invalid_request", "invalid_parameter"), answer


def test_a_debit_beyond_the_live_balance_is_refused_and_changes_nothing(client, settings, headers, redis_client,
                                                                        alice):
    hot = redis_keys.account(alice.shard(settings), alice.account.id)
    redis_client.hincrby(hot, "held", 1_000_000_000)  # a request in flight holds $1
    before = ledger_count(settings)
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/credit",
                          {"amount": "-9.000000001", "reason": "too much"})
    assert (status, error(answer)[0]) == (400, "invalid_parameter")
    assert "more than the live balance allows: $9.00" in error(answer)[1]
    assert ledger_count(settings) == before
    assert redis_client.hmget(hot, "bal", "held") == ["10000000000", "1000000000"]
    assert call(client, headers, "POST", f"/accounts/{alice.account.id}/credit",
                {"amount": "-9", "reason": "all that is free"})[0] == 201
    assert redis_client.hget(hot, "bal") == "1000000000"


def test_a_credit_is_audited_as_the_admin_keys(client, settings, headers, admin_email, alice):
    call(client, headers, "POST", f"/accounts/{alice.account.id}/credit", {"amount": "1.5", "reason": "loyalty"})
    with db.read_session(settings) as session:
        row = session.scalar(select(AuditEntry).where(AuditEntry.entity == "ledger_transaction")
                             .order_by(AuditEntry.id.desc()))
    assert row.actor.startswith("admin key ") and row.actor.endswith(f"({admin_email})")
    assert (json.loads(row.before), json.loads(row.after)["balance_nano"], row.reason) == (
        {"balance_nano": 10_000_000_000}, 11_500_000_000, "loyalty")


# -- refunds ---------------------------------------------------------------------------------------


def payment_of(client, headers, account_id: int) -> dict:
    return call(client, headers, "GET", f"/accounts/{account_id}")[1]["payments"][0]


def test_a_refund_repeated_with_the_same_refunds_seen_refunds_once(client, settings, headers, alice):
    payment = payment_of(client, headers, alice.account.id)
    body = {"payment": payment["transaction_id"], "amount": "4", "reason": "asked", "refunds_seen": 0}
    status, first = call(client, headers, "POST", f"/accounts/{alice.account.id}/refunds", body)
    assert status == 201 and first["repeated"] is False
    assert (first["transaction"]["type"], first["transaction"]["amount_nano"]) == ("refund", -4_000_000_000)
    assert first["transaction"]["description"] == f"Refund of payment #{payment['transaction_id']}: asked"
    status, again = call(client, headers, "POST", f"/accounts/{alice.account.id}/refunds", body)
    assert status == 200 and again["repeated"] is True and again["transaction"]["id"] == first["transaction"]["id"]
    after = payment_of(client, headers, alice.account.id)
    assert (after["refunded_nano"], after["refundable_nano"], after["refunds"]) == (4_000_000_000, 6_000_000_000, 1)
    assert sql_balance(settings, alice.account.id) == 6_000_000_000


def test_refunds_never_exceed_the_payment(client, settings, headers, alice):
    call(client, headers, "POST", f"/accounts/{alice.account.id}/credit", {"amount": "20", "reason": "gift"})
    payment_id = payment_of(client, headers, alice.account.id)["transaction_id"]
    body = {"payment": payment_id, "reason": "asked"}
    assert call(client, headers, "POST", f"/accounts/{alice.account.id}/refunds", {**body, "amount": "6"})[0] == 201
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/refunds", {**body, "amount": "4.01"})
    assert (status, error(answer)[0]) == (400, "invalid_parameter")
    assert "At most $4.00 of payment" in error(answer)[1]
    assert call(client, headers, "POST", f"/accounts/{alice.account.id}/refunds", {**body, "amount": "4"})[0] == 201
    assert sql_balance(settings, alice.account.id) == 20_000_000_000


@pytest.mark.parametrize(("body", "field"), [
    ({"amount": "1", "reason": "r"}, "payment"),
    ({"payment": "7", "amount": "1", "reason": "r"}, "payment"),
    ({"payment": -1, "amount": "1", "reason": "r"}, "payment"),
    ({"payment": 99999999, "amount": "1", "reason": "r"}, "payment"),
    ({"payment": "{payment}", "amount": "1", "reason": "r", "refunds_seen": 3}, "payment"),
    ({"payment": "{payment}", "amount": "1", "reason": "r", "refunds_seen": -1}, "refunds_seen"),
    ({"payment": "{payment}", "amount": "-1", "reason": "r"}, "amount"),
    ({"payment": "{payment}", "amount": "10.01", "reason": "r"}, "amount"),
    ({"payment": "{payment}", "amount": "1"}, "reason"),
])
def test_a_bad_refund_is_a_clear_400(client, settings, headers, alice, body, field):
    payment_id = payment_of(client, headers, alice.account.id)["transaction_id"]
    body = {name: payment_id if value == "{payment}" else value for name, value in body.items()}
    before = ledger_count(settings)
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/refunds", body)
    assert (status, error(answer)[0]) == (400, "invalid_parameter") and f"'{field}'" in error(answer)[1], answer
    assert ledger_count(settings) == before


def test_another_accounts_payment_is_not_refunded(client, settings, headers, alice, make_customer):
    bob = make_customer("bob@shop.test", "10")
    payment_id = payment_of(client, headers, bob.account.id)["transaction_id"]
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/refunds",
                          {"payment": payment_id, "amount": "1", "reason": "r"})
    assert status == 400 and f"has no payment #{payment_id}" in error(answer)[1]


# -- suspension ------------------------------------------------------------------------------------


def test_suspend_and_reactivate_reach_redis(client, settings, headers, redis_client, alice):
    lookup = redis_keys.apikey(alice.key.key_hash)
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/suspend", {"reason": "fraud check"})
    assert status == 200 and (answer["status"], answer["changed"], answer["live"]) == ("suspended", True, True)
    assert redis_client.hget(lookup, "status") == "suspended"
    assert call(client, headers, "POST", f"/accounts/{alice.account.id}/suspend", {"reason": "again"})[1][
        "changed"] is False
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/reactivate")
    assert status == 200 and answer["status"] == "active" and redis_client.hget(lookup, "status") == "active"


def test_suspending_needs_a_reason_and_a_deleted_account_stays_deleted(client, settings, headers, alice):
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/suspend", {})
    assert (status, error(answer)[0]) == (400, "invalid_parameter") and "'reason'" in error(answer)[1]
    with db.session_scope(settings) as session:
        owner = session.get(Account, alice.account.id)
        owner.status, owner.deleted_at = "disabled", utcnow()
    for action in ("suspend", "reactivate"):
        status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/{action}", {"reason": "r"})
        assert (status, error(answer)[0]) == (400, "invalid_request") and "deleted by its owner" in error(answer)[1]


def test_an_admin_key_cannot_suspend_its_own_admin(client, settings, headers, admin_email):
    with db.read_session(settings) as session:
        own_id = accounts.find_by_email(session, admin_email).id
    status, answer = call(client, headers, "POST", f"/accounts/{own_id}/suspend", {"reason": "r"})
    assert (status, error(answer)[0]) == (400, "invalid_request")


# -- keys ------------------------------------------------------------------------------------------


def test_key_limits_and_revocation_reach_redis(client, settings, headers, redis_client, alice):
    state = redis_keys.key_state(alice.shard(settings), alice.key.id)
    lookup = redis_keys.apikey(alice.key.key_hash)
    status, answer = call(client, headers, "PATCH", f"/keys/{alice.key.id}", {"limit": "1.25", "rpm": 10})
    assert status == 200 and (answer["limit"], answer["limit_nano"], answer["rpm"], answer["tpm"]) == (
        Decimal("1.25"), 1_250_000_000, 10, None)
    assert redis_client.hget(state, "limit") == "1250000000" and redis_client.hget(lookup, "rpm") == "10"
    status, answer = call(client, headers, "PATCH", f"/keys/{alice.key.id}", {"limit": None, "tpm": 5000})
    assert (answer["limit_nano"], answer["rpm"], answer["tpm"]) == (None, 10, 5000)
    assert redis_client.hget(state, "limit") is None and redis_client.hget(lookup, "tpm") == "5000"
    status, answer = call(client, headers, "POST", f"/keys/{alice.key.id}/revoke")
    assert status == 200 and answer["status"] == "revoked" and redis_client.hget(lookup, "status") == "revoked"
    status, answer = call(client, headers, "PATCH", f"/keys/{alice.key.id}", {"rpm": 5})
    assert (status, error(answer)[0]) == (400, "invalid_request") and "revoked" in error(answer)[1]


@pytest.mark.parametrize(("body", "field"), [({"limit": "-1"}, "limit"), ({"limit": "x"}, "limit"),
                                             ({"limit": 1.5e400}, "limit"), ({"rpm": 0}, "rpm"),
                                             ({"rpm": "5"}, "rpm"), ({"tpm": 2**31}, "tpm"),
                                             ({"rpm": True}, "rpm"), ({"name": "x"}, "name")])
def test_a_bad_key_change_is_a_clear_400(client, settings, headers, redis_client, alice, body, field):
    status, answer = call(client, headers, "PATCH", f"/keys/{alice.key.id}", raw=json.dumps(body).replace(
        "Infinity", "1.5e400").encode())
    assert (status, error(answer)[0]) == (400, "invalid_parameter") and f"'{field}'" in error(answer)[1], answer
    assert redis_client.hget(redis_keys.key_state(alice.shard(settings), alice.key.id), "limit") is None


def test_an_empty_key_change_is_a_400(client, headers, alice):
    status, answer = call(client, headers, "PATCH", f"/keys/{alice.key.id}", {})
    assert (status, error(answer)[0]) == (400, "invalid_request")


def test_with_redis_unreachable_a_debit_is_a_503_and_changes_nothing(app, client, settings, headers, alice):
    app.config["TOLLGATE_SETTINGS"] = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{_free_port()}/0")
    before = ledger_count(settings)
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/credit",
                          {"amount": "-1", "reason": "correction"})
    assert (status, error(answer)[0]) == (503, "control_plane_unavailable")
    assert ledger_count(settings) == before
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/credit",
                          {"amount": "1", "reason": "goodwill"})
    assert status == 201 and answer["live"] is False and answer["account"]["balance_nano"] == 11_000_000_000
    status, answer = call(client, headers, "POST", f"/accounts/{alice.account.id}/suspend", {"reason": "r"})
    assert status == 200 and (answer["status"], answer["live"]) == ("suspended", False)
