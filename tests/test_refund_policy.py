"""The refund policy (billing/refunds.py): card top-ups within TOLLGATE_REFUND_WINDOW_HOURS (always
without it), USDT deposits only once the admin sent them back by hand (no window), a card fee
never refunded; each refund issues its credit note at once. Through the service and the admin API."""
from __future__ import annotations

from datetime import timedelta

import pytest
from admin_client import make_admin_key
from helpers import sql_balance
from sqlalchemy import select, update

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import accounts
from control_plane.app import create_app
from control_plane.billing import invoices, refunds, topup_fees
from control_plane.deposits import ledger as deposit_ledger
from control_plane.models import LedgerAccount, LedgerEntry, LedgerTransaction, utcnow

TRON_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def policy(tollgate_env, **env):
    return settings_module.load({**tollgate_env, **env})


@pytest.fixture
def windowed(tollgate_env):
    return policy(tollgate_env, TOLLGATE_REFUND_WINDOW_HOURS="24")


def new_account(settings, email="payer@example.com") -> int:
    with db.session_scope(settings) as session:
        return accounts.create_account(session, email).id


def card_payment(settings, account_id: int, amount_nano: int, hours_ago: float = 0, fee_nano: int = 0,
                 event_id: str = "evt_1") -> int:
    """A credited card top-up (with its fee), made so many hours ago; its transaction id."""
    key = f"payment:{event_id}"
    with db.session_scope(settings) as session:
        posted = deposit_ledger.credit_topup(session, settings, account_id, amount_nano, key, "Card top-up")
        if fee_nano:
            topup_fees.post_fee(session, account_id, fee_nano, key, settings.topup_fee_percent, amount_nano)
        ids = [transaction.id for transaction in posted]
        session.execute(update(LedgerTransaction).where(LedgerTransaction.id.in_(ids))
                        .values(created_at=utcnow() - timedelta(hours=hours_ago)))
    deposit_ledger.publish(settings, ids)
    return ids[0]


def usdt_payment(settings, account_id: int, base_units: int, hours_ago: float = 0) -> int:
    with db.session_scope(settings) as session:
        deposit = deposit_ledger.record_deposit(
            session, chain="tron", tx_hash="cd" * 32, log_index=0, account_id=account_id, token_contract=TRON_USDT,
            amount=base_units, block_number=100, block_hash="b" * 64, status="confirmed")
        ids = [transaction.id for transaction in deposit_ledger.credit_deposit(session, settings, deposit)]
        session.execute(update(LedgerTransaction).where(LedgerTransaction.id.in_(ids))
                        .values(created_at=utcnow() - timedelta(hours=hours_ago)))
    deposit_ledger.publish(settings, ids)
    return ids[0]


def refund_count(settings) -> int:
    with db.read_session(settings) as session:
        return len(list(session.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "refund"))))


def test_a_card_top_up_is_refundable_within_the_window(windowed):
    account_id = new_account(windowed)
    payment_id = card_payment(windowed, account_id, 20_000_000_000, hours_ago=23.9)
    refunds.refund(windowed, account_id, payment_id, 20_000_000_000, "asked in time", 0)
    assert sql_balance(windowed, account_id) == 0


def test_a_card_top_up_past_the_window_is_refused_and_nothing_moves(windowed):
    account_id = new_account(windowed)
    payment_id = card_payment(windowed, account_id, 20_000_000_000, hours_ago=24.1)
    with pytest.raises(refunds.InvalidField) as refused:
        refunds.refund(windowed, account_id, payment_id, 1_000_000_000, "too late", 0)
    assert refused.value.field == "payment"
    assert str(refused.value) == (f"Payment #{payment_id} is past the refund window: card top-ups are refundable "
                                  "for 24 hours after payment")
    assert (sql_balance(windowed, account_id), refund_count(windowed)) == (20_000_000_000, 0)


def test_without_a_window_an_old_card_top_up_stays_refundable(settings):
    account_id = new_account(settings)
    payment_id = card_payment(settings, account_id, 20_000_000_000, hours_ago=24 * 400)
    refunds.refund(settings, account_id, payment_id, 5_000_000_000, "goodwill", 0)
    assert sql_balance(settings, account_id) == 15_000_000_000


def test_a_usdt_deposit_is_not_refunded_unless_it_was_sent_back_by_hand(windowed):
    account_id = new_account(windowed)
    payment_id = usdt_payment(windowed, account_id, 30_000_000, hours_ago=24 * 30)  # the window does not apply
    with pytest.raises(refunds.InvalidField) as refused:
        refunds.refund(windowed, account_id, payment_id, 30_000_000_000, "wrong address", 0)
    assert refused.value.field == "payment"
    assert "is a USDT deposit on tron: it is not refunded automatically. Send the USDT back yourself, then confirm" \
        in str(refused.value)
    assert refund_count(windowed) == 0
    refunds.refund(windowed, account_id, payment_id, 30_000_000_000, "wrong address", 0, sent_back=True)
    assert sql_balance(windowed, account_id) == 0


def test_a_card_fee_is_never_refunded(tollgate_env):
    settings = policy(tollgate_env, TOLLGATE_TOPUP_FEE_PERCENT="3")
    account_id = new_account(settings)
    payment_id = card_payment(settings, account_id, 100_000_000_000, fee_nano=3_000_000_000)  # + its 5 % bonus
    with pytest.raises(refunds.InvalidField, match=r"At most \$100.00 of payment #\d+ can be refunded"):
        refunds.refund(settings, account_id, payment_id, 100_000_000_001, "all of it", 0)
    refunds.refund(settings, account_id, payment_id, 100_000_000_000, "all of it", 0)
    assert sql_balance(settings, account_id) == 5_000_000_000  # the bonus stays, as before
    with db.read_session(settings) as session:
        fees = session.scalar(select(LedgerEntry.amount).join(LedgerAccount).where(LedgerAccount.code == "system:fees"))
    assert fees == 3_000_000_000


def test_each_refund_issues_its_credit_note_at_once(settings):
    account_id = new_account(settings)
    payment_id = card_payment(settings, account_id, 20_000_000_000)
    refunds.refund(settings, account_id, payment_id, 4_000_000_000, "partly", 0)
    again = refunds.refund(settings, account_id, payment_id, 4_000_000_000, "partly", 0)  # a double click
    assert again.repeated
    with db.read_session(settings) as session:
        documents = [invoices.document(row) for row in invoices.for_account(session, account_id)]
    assert [(doc.kind, doc.total_nano) for doc in documents] == [("credit_note", -4_000_000_000),
                                                                 ("invoice", 20_000_000_000)]
    assert documents[0].refers_to == documents[1].number


# -- the admin API's refund field ----------------------------------------------------------------


@pytest.fixture
def api(windowed):
    client = create_app({"TESTING": True, "TOLLGATE_SETTINGS": windowed}).test_client()
    headers = {"Authorization": f"Bearer {make_admin_key(windowed)}"}

    def refund(account_id: int, body: dict):
        response = client.post(f"/api/admin/v1/accounts/{account_id}/refunds", json=body, headers=headers)
        return response.status_code, response.get_json()

    return refund


def test_the_admin_api_refunds_usdt_only_with_sent_back(windowed, api):
    account_id = new_account(windowed)
    payment_id = usdt_payment(windowed, account_id, 12_000_000)
    body = {"payment": payment_id, "amount": "12", "reason": "sent back", "refunds_seen": 0}
    status, answer = api(account_id, body)
    assert status == 400 and answer["error"]["code"] == "invalid_parameter"
    assert answer["error"]["message"].startswith(f"'payment': Payment #{payment_id} is a USDT deposit on tron")
    status, answer = api(account_id, {**body, "sent_back": True})
    assert status == 201 and answer["transaction"]["amount_nano"] == -12_000_000_000


@pytest.mark.parametrize("value", ["yes", 1, 0])
def test_the_admin_api_wants_sent_back_as_a_boolean(windowed, api, value):
    account_id = new_account(windowed)
    payment_id = card_payment(windowed, account_id, 12_000_000_000)
    status, answer = api(account_id, {"payment": payment_id, "amount": "1", "reason": "r", "sent_back": value})
    assert status == 400 and "sent_back" in answer["error"]["message"]
    assert refund_count(windowed) == 0


def test_the_admin_api_refuses_a_card_top_up_past_the_window(windowed, api):
    account_id = new_account(windowed)
    payment_id = card_payment(windowed, account_id, 12_000_000_000, hours_ago=30)
    status, answer = api(account_id, {"payment": payment_id, "amount": "1", "reason": "late"})
    assert status == 400 and "past the refund window" in answer["error"]["message"]
