"""The double-entry ledger: balanced, idempotent, and the cached balance equal to the entries."""
import time

import pytest
from sqlalchemy import func, select

from control_plane import db
from control_plane.accounts import accounts
from control_plane.billing import ledger
from control_plane.models import Account, LedgerEntry, LedgerTransaction


@pytest.fixture
def account_id(settings):
    with db.session_scope(settings) as session:
        return accounts.create_account(session, "Bob@Example.com ").id


def test_email_is_stored_lowercased_and_trimmed(settings, account_id):
    with db.session_scope(settings) as session:
        assert session.get(Account, account_id).email == "bob@example.com"


def test_unbalanced_transaction_is_refused(settings, account_id):
    with db.session_scope(settings) as session, pytest.raises(ValueError, match="unbalanced"):
        ledger.post(session, "adjustment", "k1", account_id,
                    [(ledger.wallet(account_id), 5), (ledger.ADJUSTMENTS, -4)])


def test_float_amount_is_refused(settings, account_id):
    with db.session_scope(settings) as session, pytest.raises(ValueError, match="integers"):
        ledger.post(session, "adjustment", "k1", account_id,
                    [(ledger.wallet(account_id), 0.5), (ledger.ADJUSTMENTS, -0.5)])


def test_every_transaction_sums_to_zero(settings, account_id):
    with db.session_scope(settings) as session:
        ledger.credit(session, "deposit", account_id, 7_000_000_000, "d1", "Deposit")
        ledger.adjust(session, account_id, -2_500_000_000, "correction")
    with db.session_scope(settings) as session:
        sums = session.scalars(select(func.sum(LedgerEntry.amount)).group_by(LedgerEntry.transaction_id)).all()
    assert sums == [0, 0]


def test_same_idempotency_key_posts_once(settings, account_id):
    with db.session_scope(settings) as session:
        first = ledger.credit(session, "deposit", account_id, 1_000, "deposit:tx1", "Deposit")
    with db.session_scope(settings) as session:
        second = ledger.credit(session, "deposit", account_id, 1_000, "deposit:tx1", "Deposit")
        assert second.id == first.id
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 1
        assert session.get(Account, account_id).balance_nano == 1_000


def test_idempotency_race_returns_the_committed_transaction(settings, account_id, monkeypatch):
    """Another session commits the key between our look-up and our insert."""
    with db.session_scope(settings) as session:
        committed = ledger.credit(session, "deposit", account_id, 1_000, "deposit:race", "Deposit")
    real_find = ledger.find
    calls = []

    def find_missing_first(session, key):
        calls.append(key)
        return None if len(calls) == 1 else real_find(session, key)

    monkeypatch.setattr(ledger, "find", find_missing_first)
    with db.session_scope(settings) as session:
        again = ledger.credit(session, "deposit", account_id, 1_000, "deposit:race", "Deposit")
        assert again.id == committed.id
        assert session.get(Account, account_id).balance_nano == 1_000
    assert len(calls) == 2


def test_cached_balance_equals_sum_of_wallet_entries(settings, account_id):
    with db.session_scope(settings) as session:
        ledger.credit(session, "deposit", account_id, 10_000, "d1", "Deposit")
        ledger.credit(session, "bonus", account_id, 500, "b1", "Bonus")
        charge = ledger.usage_posting(account_id, "req-1", 1_234, "test-chat: 1 input, 1 output tokens")
        ledger.post_new(session, [charge])
    with db.session_scope(settings) as session:
        assert session.get(Account, account_id).balance_nano == 9_266
        balance = ledger.account_balance(session, account_id)
        assert (balance, type(balance)) == (9_266, int)


def test_wallet_leg_must_belong_to_the_transactions_account(settings, account_id):
    with db.session_scope(settings) as session:
        other = accounts.create_account(session, "carol@example.com").id
        with pytest.raises(ValueError, match="does not belong"):
            ledger.post(session, "adjustment", "k1", account_id, [(ledger.wallet(other), 1), (ledger.ADJUSTMENTS, -1)])


def test_open_reader_does_not_hold_up_a_writer(settings, account_id):
    """The API reads while the worker writes: on SQLite a reader must take no write lock."""
    with db.read_session(settings) as reader:
        assert reader.get(Account, account_id) is not None
        started = time.monotonic()
        with db.session_scope(settings) as writer:
            ledger.credit(writer, "deposit", account_id, 1, "d-concurrent", "Deposit")
        assert time.monotonic() - started < 1
