"""The admin console's Accounts pages, in-process: search and paging, an account's figures exactly
as its ledger and Redis hold them, credits and debits with a reason (never below zero), payment
refunds (once, never beyond the payment or the balance), suspension, and key changes reaching
Redis, each written to the audit log with the admin as actor and the values before and after."""
from __future__ import annotations

import dataclasses
import html
import json
import re

import pytest
from admin_client import signed_in_admin
from conftest import _free_port
from console_client import PASSWORD, ConsoleClient
from helpers import drain_all, redis_balance, sql_balance, usage_entry, usage_record
from sqlalchemy import func, select

from control_plane import db
from control_plane.accounts import accounts, api_keys, passwords
from control_plane.billing import ledger
from control_plane.deposits import ledger as deposit_ledger
from control_plane.hot import credits, redis_keys
from control_plane.models import Account, ApiKey, AuditEntry, LedgerAccount, LedgerEntry, LedgerTransaction, utcnow
from control_plane.money import usd_to_nano

TRON_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
ROW_EMAIL = re.compile(r'<td><a href="/admin/accounts/(\d+)">([^<]+)</a>')
OPTION = re.compile(r'<option value="(\d+:\d+)">#(\d+) ')


@pytest.fixture
def admin(app, settings):
    client = signed_in_admin(settings, app=app)
    yield client
    client.close()


def listed(page_html: str) -> list[str]:
    """The emails of the accounts a list page shows, in order."""
    return [email for _id, email in ROW_EMAIL.findall(page_html)]


def errors_of(page_html: str) -> list[str]:
    return [html.unescape(text) for text in re.findall(r'<span class="error">([^<]+)</span>', page_html)]


def live_balance(page_html: str) -> str:
    return re.search(r'id="live-balance">([^<]+)<', page_html).group(1)


def ledger_count(settings) -> int:
    with db.read_session(settings) as session:
        return session.scalar(select(func.count()).select_from(LedgerTransaction))


def audit_of(settings, entity: str, entity_id) -> list[AuditEntry]:
    with db.read_session(settings) as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.entity == entity,
                                                             AuditEntry.entity_id == str(entity_id))
                                    .order_by(AuditEntry.id)))


def credit(admin, account_id: int, amount: str, reason: str = "goodwill"):
    admin.get(f"/admin/accounts/{account_id}")
    return admin.post_form(f"/admin/accounts/{account_id}/credit", {"credit-amount": amount, "credit-reason": reason})


def refund(admin, account_id: int, payment: str, amount: str, reason: str = "customer asked", sent_back=False):
    admin.get(f"/admin/accounts/{account_id}")
    fields = {"refund-payment": payment, "refund-amount": amount, "refund-reason": reason}
    return admin.post_form(f"/admin/accounts/{account_id}/refunds",
                           {**fields, "refund-sent_back": "y"} if sent_back else fields)


def payment_choices(admin, account_id: int) -> dict[int, str]:
    """payment transaction id -> the refund form's value for it."""
    return {int(payment_id): value for value, payment_id in OPTION.findall(admin.get(f"/admin/accounts/{account_id}").text)}


# -- the list ----------------------------------------------------------------------------------------


def test_search_by_part_of_the_email_or_the_id_and_by_status(admin, settings, make_customer):
    alice = make_customer("alice@shop.test", "10")
    make_customer("bob@shop.test", None)
    carol = make_customer("carol@other.org", "1")
    page = admin.get("/admin/accounts").text
    assert listed(page)[:3] == ["carol@other.org", "bob@shop.test", "alice@shop.test"]  # newest first
    assert listed(admin.get("/admin/accounts?q=SHOP.test").text) == ["bob@shop.test", "alice@shop.test"]
    # Digits are the id, or part of an email; "#" before them only the id.
    assert "carol@other.org" in listed(admin.get(f"/admin/accounts?q={carol.account.id}").text)
    assert listed(admin.get(f"/admin/accounts?q=%23{carol.account.id}").text) == ["carol@other.org"]
    assert listed(admin.get(f"/admin/accounts?q=%23{alice.account.id}").text) == ["alice@shop.test"]
    assert listed(admin.get("/admin/accounts?q=%25").text) == []  # a LIKE wildcard is searched for as itself
    with db.session_scope(settings) as session:
        session.get(Account, alice.account.id).status = "suspended"
    suspended = admin.get("/admin/accounts?status=suspended").text
    assert listed(suspended) == ["alice@shop.test"]
    assert "No account matches this search." in admin.get("/admin/accounts?q=nobody").text


def test_the_list_shows_each_accounts_live_balance_and_active_keys(admin, settings, make_customer, redis_client):
    alice = make_customer("alice@example.com", "10")
    redis_client.hincrby(redis_keys.account(alice.shard(settings), alice.account.id), "bal", -1_250_000_000)
    row = re.search(r'alice@example.com</a></td>(.*?)</tr>', admin.get("/admin/accounts?q=alice").text, re.DOTALL).group(1)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
    assert cells[:4] == [str(alice.account.id), "active", "$8.75", "1"]


def test_the_list_pages_by_keyset(admin, settings):
    with db.session_scope(settings) as session:
        for number in range(53):
            accounts.create_account(session, f"user{number:02d}@example.com")
    first = admin.get("/admin/accounts?q=user").text
    assert len(listed(first)) == 50 and listed(first)[0] == "user52@example.com"
    older = re.search(r'href="\?([^"]+)" rel="next"', first).group(1)
    second = admin.get(f"/admin/accounts?{html.unescape(older)}").text
    assert listed(second) == ["user02@example.com", "user01@example.com", "user00@example.com"]
    assert 'rel="prev"' in second and 'rel="next"' not in second


# -- an account's figures -----------------------------------------------------------------------------


def test_a_deposit_then_a_credit_shows_their_exact_sum(admin, settings, make_customer):
    alice = make_customer("alice@example.com", "10")
    response = credit(admin, alice.account.id, "2.50", "Welcome bonus")
    assert response.status_code == 200 and "Credited $2.50" in response.text
    assert live_balance(response.text) == "$12.50"
    assert "Welcome bonus" in response.text and "$10.00" in response.text
    assert sql_balance(settings, alice.account.id) == 12_500_000_000


def test_the_customer_sees_the_credit_as_an_adjustment_with_its_reason(app, admin, settings, make_customer):
    alice = make_customer("alice@example.com", "10")
    with db.session_scope(settings) as session:
        owner = session.get(Account, alice.account.id)
        owner.password_hash, owner.email_verified_at = passwords.hash_password(PASSWORD), utcnow()
    credit(admin, alice.account.id, "-1.25", "Charged twice by mistake")
    customer = ConsoleClient(app=app)
    customer.log_in("alice@example.com", PASSWORD)
    page = customer.get("/console/transactions").text
    row = re.search(r"<td>adjustment</td>\s*<td[^>]*>([^<]+)</td>\s*<td>([^<]+)</td>", page)
    assert row.groups() == ("-$1.25", "Charged twice by mistake")


def test_the_page_lists_the_accounts_requests_keys_and_ledger(admin, settings, make_customer, price_version, drain,
                                                              redis_client):
    alice = make_customer("alice@example.com", "10")
    redis_client.xadd(redis_keys.usage_stream(alice.shard(settings)),
                      usage_entry(usage_record(alice, price_version, "req-admin-1")))
    assert drain_all(drain) == 1
    page = admin.get(f"/admin/accounts/{alice.account.id}").text
    assert "req-admin-1" in page and "$0.000525" in page
    assert f'<tr id="key-{alice.key.id}">' in page and f"{alice.key.prefix}…" in page
    assert "Test deposit" in page


def test_an_unknown_account_is_a_404_page(admin):
    for path in ("/admin/accounts/999999", "/admin/accounts/99999999999", "/admin/accounts/999999/ledger"):
        response = admin.get(path)
        assert response.status_code == 404 and "text/html" in response.headers["content-type"], path


def test_the_ledger_page_lists_every_transaction(admin, settings, make_customer):
    alice = make_customer("alice@example.com", "10")
    for cents in range(1, 4):
        credit(admin, alice.account.id, f"0.0{cents}", f"credit {cents}")
    page = admin.get(f"/admin/accounts/{alice.account.id}/ledger").text
    amounts = re.findall(r'<td class="num[^"]*">([^<]+)</td>', page)
    assert amounts == ["$0.03", "$0.02", "$0.01", "$10.00"]


# -- credits and debits ----------------------------------------------------------------------------


def test_a_credit_without_a_reason_is_refused_at_its_field(admin, settings, make_customer):
    alice = make_customer("alice@example.com", "10")
    before = ledger_count(settings)
    response = credit(admin, alice.account.id, "5", "   ")
    assert response.status_code == 400
    assert "Give a reason" in " ".join(errors_of(response.text))
    assert ledger_count(settings) == before


@pytest.mark.parametrize(("amount", "message"), [
    ("ten", "Give a USD amount"), ("0", "must not be zero"), ("1.0000000001", "Give a USD amount"),
    ("1e30", "at most $1000000.00"), ("-1000000.000000001", "at most $1000000.00"), ("", "Give an amount"),
    ("NaN", "Give a USD amount"), ("1e999999999", "at most $1000000.00"),
])
def test_a_bad_amount_is_refused_at_its_field(admin, settings, make_customer, amount, message):
    alice = make_customer("alice@example.com", "10")
    before = ledger_count(settings)
    response = credit(admin, alice.account.id, amount)
    assert response.status_code == 400
    assert any(message in error for error in errors_of(response.text)), errors_of(response.text)
    assert ledger_count(settings) == before


def test_a_debit_beyond_the_balance_is_refused_and_changes_nothing(admin, settings, make_customer, redis_client):
    alice = make_customer("alice@example.com", "10")
    before = (ledger_count(settings), len(audit_of(settings, "ledger_transaction", "")))
    response = credit(admin, alice.account.id, "-10.000000001", "too much")
    assert response.status_code == 400
    assert "a balance never goes below zero" in " ".join(errors_of(response.text))
    assert live_balance(response.text) == "$10.00"
    assert (sql_balance(settings, alice.account.id), redis_balance(settings, redis_client, alice.account.id)) == (
        10_000_000_000, 10_000_000_000)
    assert (ledger_count(settings), len(audit_of(settings, "ledger_transaction", ""))) == before


def test_a_debit_is_refused_beyond_the_live_balance_less_what_requests_in_flight_hold(
        admin, settings, make_customer, redis_client):
    alice = make_customer("alice@example.com", "10")
    hot = redis_keys.account(alice.shard(settings), alice.account.id)
    redis_client.hincrby(hot, "bal", -3_000_000_000)  # usage not drained yet
    redis_client.hincrby(hot, "held", 2_000_000_000)  # a lease for requests in flight
    refused = credit(admin, alice.account.id, "-5.01", "correction")
    assert refused.status_code == 400
    assert "more than the live balance allows: $5.00" in " ".join(errors_of(refused.text))
    assert redis_client.hget(hot, "bal") == "7000000000" and sql_balance(settings, alice.account.id) == 10_000_000_000
    taken = credit(admin, alice.account.id, "-5", "correction")
    assert taken.status_code == 200 and "Debited $5.00" in taken.text
    assert redis_client.hmget(hot, "bal", "held") == ["2000000000", "2000000000"]
    with db.read_session(settings) as session:
        debit = session.scalar(select(LedgerTransaction).where(LedgerTransaction.kind == "adjustment"))
        assert (debit.published, debit.description, session.get(Account, alice.account.id).balance_nano) == (
            True, "correction", 5_000_000_000)
    # Applied once: the worker's pass over unpublished credits leaves it alone, and the attempt's
    # marker is gone with its commit.
    with db.session_scope(settings) as session:
        credits.apply_unpublished(session, settings)
    assert redis_client.hget(hot, "bal") == "2000000000"
    assert list(redis_client.scan_iter("tg:*taken:*")) == []


def test_a_debit_to_exactly_zero_is_allowed(admin, settings, make_customer, redis_client):
    alice = make_customer("alice@example.com", "10")
    assert credit(admin, alice.account.id, "-10", "closing the account").status_code == 200
    assert (sql_balance(settings, alice.account.id), redis_balance(settings, redis_client, alice.account.id)) == (0, 0)


def test_credits_and_debits_are_audited_with_the_admin_and_the_balance_before_and_after(
        admin, settings, make_customer):
    alice = make_customer("alice@example.com", "10")
    credit(admin, alice.account.id, "2.50", "Welcome bonus")
    credit(admin, alice.account.id, "-0.000000001", "rounding")
    with db.read_session(settings) as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.entity == "ledger_transaction",
                                                             AuditEntry.actor == f"admin {admin.email}")
                                    .order_by(AuditEntry.id)))
    assert [(json.loads(row.before), json.loads(row.after), row.reason, row.action) for row in rows] == [
        ({"balance_nano": 10_000_000_000},
         {"kind": "adjustment", "account_id": alice.account.id, "amount_nano": 2_500_000_000,
          "balance_nano": 12_500_000_000}, "Welcome bonus", "post"),
        ({"balance_nano": 12_500_000_000},
         {"kind": "adjustment", "account_id": alice.account.id, "amount_nano": -1, "balance_nano": 12_499_999_999},
         "rounding", "post"),
    ]
    assert rows[0].ip is not None


# -- refunds ---------------------------------------------------------------------------------------


def test_a_payment_is_refunded_once_however_often_the_form_is_sent(admin, settings, make_customer, redis_client):
    alice = make_customer("alice@example.com", "10")
    (payment_id, value), = payment_choices(admin, alice.account.id).items()
    first = refund(admin, alice.account.id, value, "4")
    assert first.status_code == 200 and f"Refunded $4.00 of payment #{payment_id}" in first.text
    again = refund(admin, alice.account.id, value, "4")  # the same form sent twice (a double click)
    assert again.status_code == 200 and "That refund was made already" in again.text
    assert live_balance(again.text) == "$6.00"
    with db.read_session(settings) as session:
        refunds = list(session.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "refund")))
        assert [(row.idempotency_key, row.description) for row in refunds] == [
            (f"refund:payment:{payment_id}:0", f"Refund of payment #{payment_id}: customer asked")]
        legs = dict(session.execute(select(LedgerAccount.code, LedgerEntry.amount).join(
            LedgerEntry, LedgerEntry.ledger_account_id == LedgerAccount.id).where(
            LedgerEntry.transaction_id == refunds[0].id)).all())
    assert legs == {ledger.wallet(alice.account.id): -4_000_000_000, ledger.DEPOSITS: 4_000_000_000}
    [audited] = audit_of(settings, "ledger_transaction", refunds[0].id)
    assert (audited.actor, json.loads(audited.before), json.loads(audited.after), audited.reason) == (
        f"admin {admin.email}", {"balance_nano": 10_000_000_000},
        {"kind": "refund", "account_id": alice.account.id, "amount_nano": -4_000_000_000,
         "balance_nano": 6_000_000_000}, "customer asked")
    assert redis_balance(settings, redis_client, alice.account.id) == 6_000_000_000
    assert payment_choices(admin, alice.account.id) == {payment_id: f"{payment_id}:1"}


def test_a_refund_never_exceeds_what_is_left_of_the_payment(admin, settings, make_customer):
    alice = make_customer("alice@example.com", "10")
    credit(admin, alice.account.id, "5", "goodwill")  # a balance above the payment
    payment_id = next(iter(payment_choices(admin, alice.account.id)))
    assert refund(admin, alice.account.id, f"{payment_id}:0", "3").status_code == 200
    too_much = refund(admin, alice.account.id, f"{payment_id}:1", "7.000000001")
    assert too_much.status_code == 400
    assert f"At most $7.00 of payment #{payment_id} can be refunded (paid $10.00, refunded $3.00 before)" in \
        " ".join(errors_of(too_much.text))
    assert refund(admin, alice.account.id, f"{payment_id}:1", "7").status_code == 200
    assert payment_choices(admin, alice.account.id) == {}  # nothing left to refund
    assert "No payment of this account has anything left to refund." in admin.get(
        f"/admin/accounts/{alice.account.id}").text
    assert sql_balance(settings, alice.account.id) == 5_000_000_000


def test_a_refund_never_exceeds_the_balance(admin, settings, make_customer):
    alice = make_customer("alice@example.com", "10")
    credit(admin, alice.account.id, "-8", "spent elsewhere")
    payment_id = next(iter(payment_choices(admin, alice.account.id)))
    before = ledger_count(settings)
    response = refund(admin, alice.account.id, f"{payment_id}:0", "2.01")
    assert response.status_code == 400
    assert "$2.01 is more than the balance, $2.00: a balance never goes below zero" in " ".join(errors_of(response.text))
    assert ledger_count(settings) == before


@pytest.mark.parametrize(("payment", "amount", "reason", "message"), [
    ("", "1", "r", "Choose the payment to refund."),
    ("nonsense", "1", "r", "Choose the payment to refund."),
    ("{payment}:7", "1", "r", "has 0 refunds now, not 7"),
    ("99999999:0", "1", "r", "has no payment #99999999"),
    ("{payment}:0", "-1", "r", "A refund is a positive amount"),
    ("{payment}:0", "0.0000000001", "r", "Give a USD amount"),
    ("{payment}:0", "1", "", "Give a reason."),
    ("{payment}:0", "1", "x" * 401, "Field cannot be longer than 400 characters."),
])
def test_a_bad_refund_is_refused_at_its_field(admin, settings, make_customer, payment, amount, reason, message):
    alice = make_customer("alice@example.com", "10")
    payment_id = next(iter(payment_choices(admin, alice.account.id)))
    before = ledger_count(settings)
    response = refund(admin, alice.account.id, payment.format(payment=payment_id), amount, reason)
    assert response.status_code == 400
    assert any(message in error for error in errors_of(response.text)), errors_of(response.text)
    assert ledger_count(settings) == before


def test_an_on_chain_deposit_is_listed_and_refundable(admin, settings):
    with db.session_scope(settings) as session:
        account_id = accounts.create_account(session, "chain@example.com").id
        deposit = deposit_ledger.record_deposit(
            session, chain="tron", tx_hash="ab" * 32, log_index=3, account_id=account_id, token_contract=TRON_USDT,
            amount=25_000_000, block_number=100, block_hash="b" * 64, status="confirmed")
        posted = [transaction.id for transaction in deposit_ledger.credit_deposit(session, settings, deposit)]
    assert deposit_ledger.publish(settings, posted)  # as the watcher does once it committed the credit
    page = admin.get(f"/admin/accounts/{account_id}").text
    assert "ab" * 32 in page and "credited" in page and "deposit on tron" in page and "$25.00" in page
    payment_id = next(iter(payment_choices(admin, account_id)))
    assert payment_id == deposit.transaction_id
    assert refund(admin, account_id, f"{payment_id}:0", "25", "sent to the wrong address",
                  sent_back=True).status_code == 200
    assert sql_balance(settings, account_id) == 0


# -- suspension ------------------------------------------------------------------------------------


def test_suspending_and_reactivating_change_the_status_end_sessions_and_reach_redis(
        app, admin, settings, make_customer, redis_client):
    alice = make_customer("alice@example.com", "10")
    with db.session_scope(settings) as session:
        owner = session.get(Account, alice.account.id)
        owner.password_hash, owner.email_verified_at = passwords.hash_password(PASSWORD), utcnow()
    customer = ConsoleClient(app=app)
    customer.log_in("alice@example.com", PASSWORD)
    admin.get(f"/admin/accounts/{alice.account.id}")
    response = admin.post_form(f"/admin/accounts/{alice.account.id}/suspend", {"standing-reason": "chargeback"})
    assert response.status_code == 200 and "Account suspended" in response.text
    assert re.search(r'id="account-status">suspended<', response.text)
    lookup = redis_keys.apikey(alice.key.key_hash)
    assert redis_client.hget(lookup, "status") == "suspended"
    assert customer.get("/console/", follow=False).status_code == 303  # signed out
    response = admin.post_form(f"/admin/accounts/{alice.account.id}/reactivate", {"standing-reason": "resolved"})
    assert response.status_code == 200 and "Account reactivated" in response.text
    assert redis_client.hget(lookup, "status") == "active"
    rows = audit_of(settings, "account", alice.account.id)
    assert [(json.loads(row.before), json.loads(row.after), row.reason, row.actor) for row in rows[-2:]] == [
        ({"status": "active"}, {"status": "suspended"}, "chargeback", f"admin {admin.email}"),
        ({"status": "suspended"}, {"status": "active"}, "resolved", f"admin {admin.email}"),
    ]


def test_suspending_needs_a_reason(admin, settings, make_customer):
    alice = make_customer("alice@example.com", "10")
    admin.get(f"/admin/accounts/{alice.account.id}")
    response = admin.post_form(f"/admin/accounts/{alice.account.id}/suspend", {"standing-reason": ""})
    assert response.status_code == 400 and "Give a reason." in errors_of(response.text)
    with db.read_session(settings) as session:
        assert session.get(Account, alice.account.id).status == "active"


def test_an_admin_cannot_suspend_their_own_account(admin, settings):
    with db.read_session(settings) as session:
        own_id = accounts.find_by_email(session, admin.email).id
    admin.get(f"/admin/accounts/{own_id}")
    response = admin.post_form(f"/admin/accounts/{own_id}/suspend", {"standing-reason": "oops"})
    assert response.status_code == 400 and "You cannot suspend your own account." in errors_of(response.text)


def test_a_deleted_account_is_neither_suspended_nor_reactivated(admin, settings, make_customer):
    alice = make_customer("alice@example.com", "10")
    with db.session_scope(settings) as session:
        owner = session.get(Account, alice.account.id)
        owner.status, owner.deleted_at = "disabled", utcnow()
    page = admin.get(f"/admin/accounts/{alice.account.id}").text
    assert "It can neither be\nsuspended nor reactivated." in page and "Suspend account" not in page
    for action in ("suspend", "reactivate"):
        response = admin.post_form(f"/admin/accounts/{alice.account.id}/{action}", {"standing-reason": "x"})
        assert response.status_code == 400 and "was deleted by its owner" in html.unescape(response.text)
    with db.read_session(settings) as session:
        assert session.get(Account, alice.account.id).status == "disabled"


# -- keys ------------------------------------------------------------------------------------------


def test_changing_a_keys_limits_reaches_redis_and_the_audit_log(admin, settings, make_customer, redis_client):
    alice = make_customer("alice@example.com", "10")
    admin.get(f"/admin/accounts/{alice.account.id}")
    prefix = f"key-{alice.key.id}"
    response = admin.post_form(f"/admin/accounts/{alice.account.id}/keys/{alice.key.id}/limits",
                               {f"{prefix}-limit": "2.5", f"{prefix}-rpm": "30", f"{prefix}-tpm": "9000"})
    assert response.status_code == 200 and "Limits of key" in response.text
    state = redis_keys.key_state(alice.shard(settings), alice.key.id)
    lookup = redis_keys.apikey(alice.key.key_hash)
    assert redis_client.hget(state, "limit") == "2500000000"
    assert redis_client.hmget(lookup, "rpm", "tpm") == ["30", "9000"]
    [row] = audit_of(settings, "api_key", alice.key.id)[-1:]
    assert (json.loads(row.before), json.loads(row.after), row.actor) == (
        {"limit_nano": None, "rpm": None, "tpm": None}, {"limit_nano": 2_500_000_000, "rpm": 30, "tpm": 9000},
        f"admin {admin.email}")
    cleared = admin.post_form(f"/admin/accounts/{alice.account.id}/keys/{alice.key.id}/limits",
                              {f"{prefix}-limit": "", f"{prefix}-rpm": "", f"{prefix}-tpm": ""})
    assert cleared.status_code == 200
    assert redis_client.hget(state, "limit") is None and redis_client.hmget(lookup, "rpm", "tpm") == [None, None]


@pytest.mark.parametrize(("fields", "message"), [
    ({"limit": "-1"}, "A key's spend limit cannot be negative."),
    ({"limit": "five"}, "Give a USD amount such as 5.00"),
    ({"rpm": "0"}, "Number must be between 1 and 2147483647."),
    ({"tpm": "lots"}, "Not a valid integer value."),
])
def test_a_bad_key_limit_is_refused_at_its_field(admin, settings, make_customer, fields, message):
    alice = make_customer("alice@example.com", "10")
    admin.get(f"/admin/accounts/{alice.account.id}")
    prefix = f"key-{alice.key.id}"
    sent = {f"{prefix}-limit": "", f"{prefix}-rpm": "", f"{prefix}-tpm": "",
            **{f"{prefix}-{name}": value for name, value in fields.items()}}
    response = admin.post_form(f"/admin/accounts/{alice.account.id}/keys/{alice.key.id}/limits", sent)
    assert response.status_code == 400
    assert any(message in error for error in errors_of(response.text)), errors_of(response.text)
    with db.read_session(settings) as session:
        assert session.get(ApiKey, alice.key.id).limit_nano is None


def test_revoking_a_key_reaches_redis(admin, settings, make_customer, redis_client):
    alice = make_customer("alice@example.com", "10")
    admin.get(f"/admin/accounts/{alice.account.id}")
    response = admin.post_form(f"/admin/accounts/{alice.account.id}/keys/{alice.key.id}/revoke", {})
    assert response.status_code == 200 and "is revoked" in response.text
    assert redis_client.hget(redis_keys.apikey(alice.key.key_hash), "status") == "revoked"
    with db.read_session(settings) as session:
        assert api_keys.owned_key(session, alice.account.id, alice.key.id).status == "revoked"
    assert [json.loads(row.after)["status"] for row in audit_of(settings, "api_key", alice.key.id)[-1:]] == ["revoked"]


def test_another_accounts_key_is_a_404(admin, settings, make_customer):
    alice = make_customer("alice@example.com", "10")
    bob = make_customer("bob@example.com", "10")
    admin.get(f"/admin/accounts/{alice.account.id}")
    for action in ("revoke", "limits"):
        response = admin.post_form(f"/admin/accounts/{alice.account.id}/keys/{bob.key.id}/{action}", {})
        assert response.status_code == 404, action
    with db.read_session(settings) as session:
        assert session.get(ApiKey, bob.key.id).status == "active"


def test_amounts_are_parsed_exactly(admin, settings, make_customer):
    alice = make_customer("alice@example.com", "0.1")
    credit(admin, alice.account.id, "0.2", "float trap")
    assert sql_balance(settings, alice.account.id) == usd_to_nano("0.3") == 300_000_000


def test_with_redis_unreachable_a_debit_changes_nothing_and_a_credit_waits_for_the_worker(
        app, admin, settings, make_customer):
    alice = make_customer("alice@example.com", "10")
    admin.get(f"/admin/accounts/{alice.account.id}")
    app.config["TOLLGATE_SETTINGS"] = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{_free_port()}/0")
    refused = credit(admin, alice.account.id, "-1", "correction")
    assert refused.status_code == 503 and "Nothing was changed: the live balance could not be read" in refused.text
    assert live_balance(refused.text) == "$10.00"  # the ledger's, while Redis is away
    saved = credit(admin, alice.account.id, "1", "goodwill")
    assert saved.status_code == 200 and "Saved, but the gateway has not taken the change yet" in saved.text
    assert sql_balance(settings, alice.account.id) == 11_000_000_000
    with db.read_session(settings) as session:
        assert [row.published for row in session.scalars(select(LedgerTransaction).where(
            LedgerTransaction.kind == "adjustment"))] == [False]  # the worker applies it once Redis answers
