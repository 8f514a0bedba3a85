"""Statements: opening + movements + usage = closing, exactly, equal to the ledger to the nano-dollar,
in the account's time zone; consecutive months chain; random ledgers and one by hand."""
from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import update

from control_plane import db
from control_plane.accounts import accounts, api_keys
from control_plane.billing import ledger, statements
from control_plane.models import Account, LedgerTransaction, Usage

SOURCES = {"deposit": ledger.DEPOSITS, "bonus": ledger.BONUSES, "refund": ledger.USAGE,
           "adjustment": ledger.ADJUSTMENTS, "expiry": "system:expired", "usage": ledger.USAGE}
_numbers = itertools.count(1)


class Books:
    """Writes an account's ledger with chosen times, as the services would have recorded it."""

    def __init__(self, session, email: str, zone: str, key_names=("main",)):
        self.session = session
        self.account = accounts.create_account(session, email)
        self.account.time_zone = zone
        self.keys = [api_keys.create_key(session, self.account, name)[0] for name in key_names]
        self.charges: list[tuple[str, int]] = []  # (request id, transaction id) of each usage row
        session.flush()

    def post(self, kind: str, amount: int, at: datetime, description: str = "", key: int = 0,
             model: str = "chat-small", recorded: bool = True, tokens: tuple[int, int] = (1000, 100)) -> int:
        """A transaction moving `amount` into the wallet (negative: out of it) at `at`; for usage a
        usage row too (unless not `recorded`) on the key of that index."""
        number = next(_numbers)
        legs = [(ledger.wallet(self.account.id), amount), (SOURCES[kind], -amount)]
        transaction = ledger.post(self.session, kind, f"test:{kind}:{number}", self.account.id, legs,
                                  description or f"{kind} {number}", published=True)
        self.session.execute(update(LedgerTransaction).where(LedgerTransaction.id == transaction.id)
                             .values(created_at=at))
        if kind == "usage" and recorded:
            self.session.add(Usage(request_id=f"req-{number}", account_id=self.account.id,
                                   key_id=self.keys[key].id, model=model, status=200, billing_basis="provider",
                                   input_tokens=tokens[0], output_tokens=tokens[1], cost_nano=-amount,
                                   created_at=at - timedelta(seconds=2), transaction_id=transaction.id))
            self.charges.append((f"req-{number}", transaction.id))
        self.session.flush()
        return transaction.id

    def post_batch(self, at: datetime, charges: list[tuple[int, str, int]]) -> int:
        """One usage transaction as the drain records a batch's charges to the account: of the
        sum of `charges` (amount out of the wallet, model, key index), one usage row each."""
        number = next(_numbers)
        amount = sum(charge for charge, _model, _key in charges)
        transaction = ledger.post(self.session, "usage", f"usage-batch:test-{number}", self.account.id,
                                  [(ledger.wallet(self.account.id), amount), (ledger.USAGE, -amount)],
                                  f"{len(charges)} requests", published=True)
        self.session.execute(update(LedgerTransaction).where(LedgerTransaction.id == transaction.id)
                             .values(created_at=at))
        for index, (charge, model, key) in enumerate(charges):
            self.session.add(Usage(request_id=f"req-{number}-{index}", account_id=self.account.id,
                                   key_id=self.keys[key].id, model=model, status=200, billing_basis="provider",
                                   input_tokens=10, output_tokens=1, cost_nano=-charge,
                                   created_at=at - timedelta(seconds=1), transaction_id=transaction.id))
        self.session.flush()
        return transaction.id


def local(zone: str, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=ZoneInfo(zone))


def test_a_month_by_hand_in_new_york(settings):
    """Times near midnight count in the account's zone: 23:30 in New York on 31 January is
    04:30 UTC on 1 February, and is January's."""
    zone = "America/New_York"
    with db.session_scope(settings) as session:
        books = Books(session, "ny@example.com", zone, ("main", "batch"))
        books.post("deposit", 50_000_000_000, local(zone, 2025, 12, 31, 23, 59), "December payment")
        books.post("deposit", 100_000_000_000, local(zone, 2026, 1, 2, 9, 0), "Payment")
        books.post("bonus", 5_000_000_000, local(zone, 2026, 1, 2, 9, 0), "Top-up bonus 5%")
        books.post("usage", -1_234_567, local(zone, 2026, 1, 10, 12, 0), model="chat-small")
        books.post("usage", -765_433, local(zone, 2026, 1, 11, 12, 0), model="chat-small", key=1)
        books.post("usage", -3_000_000_001, local(zone, 2026, 1, 12, 12, 0), model="chat-large", key=1)
        books.post("usage", -7, local(zone, 2026, 1, 13, 12, 0), recorded=False)
        books.post("refund", 1_000_000_000, local(zone, 2026, 1, 20, 8, 0), "Refund of request")
        books.post("adjustment", -2_500_000_000, local(zone, 2026, 1, 25, 8, 0), "Correction")
        books.post("expiry", -10_000_000_000, local(zone, 2026, 1, 31, 23, 30), "Unused credit expired")
        books.post("usage", -99, local(zone, 2026, 2, 1, 0, 0), model="chat-small")
        # A card fee names the account but moves no wallet: not on its statement.
        fee = ledger.post(session, "fee", "fee:payment:evt_ny", books.account.id,
                          [("system:fees", 3_000_000_000), (ledger.DEPOSITS, -3_000_000_000)], "Card top-up fee 3%")
        session.execute(update(LedgerTransaction).where(LedgerTransaction.id == fee.id)
                        .values(created_at=local(zone, 2026, 1, 2, 9, 0)))
        account = books.account

        january = statements.statement(session, account, date(2026, 1, 1), date(2026, 1, 31))
        assert january.time_zone == "America/New_York"
        assert january.opening_nano == 50_000_000_000
        assert [(m.description, m.amount_nano) for m in january.credits] == [("Payment", 100_000_000_000)]
        assert january.credits[0].at == local(zone, 2026, 1, 2, 9, 0)
        assert [m.amount_nano for m in january.bonuses] == [5_000_000_000]
        assert [m.amount_nano for m in january.refunds] == [1_000_000_000]
        assert [m.amount_nano for m in january.adjustments] == [-2_500_000_000]
        assert [(m.description, m.amount_nano) for m in january.expiries] == [
            ("Unused credit expired", -10_000_000_000)]
        assert january.usage_by_model == [
            statements.UsageLine("chat-large", 1, -3_000_000_001),
            statements.UsageLine("chat-small", 2, -2_000_000),
            statements.UsageLine("unrecorded request", 1, -7),
        ]
        prefixes = [key.prefix for key in books.keys]
        assert january.usage_by_key == [
            statements.UsageLine(f"main ({prefixes[0]}…)", 1, -1_234_567),
            statements.UsageLine(f"batch ({prefixes[1]}…)", 2, -3_000_765_434),
            statements.UsageLine("unrecorded request", 1, -7),
        ]
        assert january.usage_nano == -3_002_000_008
        assert january.closing_nano == 140_497_999_992
        february = statements.statement(session, account, date(2026, 2, 1), date(2026, 2, 28))
        assert february.opening_nano == 140_497_999_992
        assert february.closing_nano == 140_497_999_893 == ledger.account_balance(session, account.id)
        assert statements.balances_before(session, account, [
            statements.bounds(ZoneInfo(zone), date(2026, 1, 1), date(2026, 1, 31))[0],
            statements.bounds(ZoneInfo(zone), date(2026, 2, 1), date(2026, 2, 28))[0],
            datetime(2030, 1, 1, tzinfo=UTC)]) == [50_000_000_000, 140_497_999_992, 140_497_999_893]
        assert statements.months(session, account, now=datetime(2026, 3, 1, 4, 59, tzinfo=UTC)) == [
            (2026, 2), (2026, 1), (2025, 12)]

        rows = list(statements.usage_rows(session, account, date(2026, 1, 1), date(2026, 1, 31)))
        assert [(row.model, row.key_name, row.cost_nano) for row in rows] == [
            ("chat-small", "main", 1_234_567), ("chat-small", "batch", 765_433), ("chat-large", "batch", 3_000_000_001),
            ("unrecorded request", "", 7)]
        assert rows[0].tokens == {"input": 1000, "cached_input": 0, "cache_write": 0, "cache_write_1h": 0,
                                  "output": 100, "reasoning": 0}
        assert rows[0].charged_at == local(zone, 2026, 1, 10, 12, 0)
        assert rows[0].requested_at == local(zone, 2026, 1, 10, 11, 59, 58)


def test_a_batch_transaction_counts_each_of_its_requests(settings):
    """The drain charges a batch's requests of an account in one transaction: the statement
    counts and sums them by their usage rows, beside a transaction of one request (recorded
    before batches) and one whose row is missing."""
    with db.session_scope(settings) as session:
        books = Books(session, "batches@example.com", "UTC", ("main", "batch"))
        books.post("deposit", 10_000_000_000, datetime(2026, 3, 1, tzinfo=UTC), "Payment")
        books.post("usage", -100, datetime(2026, 3, 2, tzinfo=UTC), model="chat-small")
        batch = books.post_batch(datetime(2026, 3, 3, tzinfo=UTC), [
            (-1_000_001, "chat-large", 1), (-20, "chat-small", 0), (-300, "chat-small", 1)])
        books.post("usage", -5, datetime(2026, 3, 4, tzinfo=UTC), recorded=False)
        books.post_batch(datetime(2026, 4, 1, tzinfo=UTC), [(-999, "chat-small", 0)])
        march = statements.statement(session, books.account, date(2026, 3, 1), date(2026, 3, 31))
        assert march.usage_by_model == [
            statements.UsageLine("chat-large", 1, -1_000_001),
            statements.UsageLine("chat-small", 3, -420),
            statements.UsageLine("unrecorded request", 1, -5),
        ]
        prefixes = [key.prefix for key in books.keys]
        assert march.usage_by_key == [
            statements.UsageLine(f"main ({prefixes[0]}…)", 2, -120),
            statements.UsageLine(f"batch ({prefixes[1]}…)", 2, -1_000_301),
            statements.UsageLine("unrecorded request", 1, -5),
        ]
        assert (march.usage_nano, march.closing_nano) == (-1_000_426, 9_998_999_574)
        rows = list(statements.usage_rows(session, books.account, date(2026, 3, 1), date(2026, 3, 31)))
        assert [(row.model, row.key_name, row.cost_nano) for row in rows] == [
            ("chat-small", "main", 100), ("chat-large", "batch", 1_000_001), ("chat-small", "main", 20),
            ("chat-small", "batch", 300), ("unrecorded request", "", 5)]
        assert [row.transaction_id for row in rows[1:4]] == [batch] * 3
        assert sum(row.cost_nano for row in rows) == -march.usage_nano


def test_a_start_after_the_end_is_refused(settings):
    with db.session_scope(settings) as session:
        account = accounts.create_account(session, "backwards@example.com")
        with pytest.raises(ValueError):
            statements.statement(session, account, date(2026, 2, 1), date(2026, 1, 31))


def test_an_account_without_movements_has_this_month_only(settings):
    with db.session_scope(settings) as session:
        account = accounts.create_account(session, "quiet@example.com")
        account.time_zone = "Asia/Singapore"
        assert statements.months(session, account, now=datetime(2026, 4, 30, 16, 0, tzinfo=UTC)) == [(2026, 5)]


BASE = datetime(2025, 11, 1, tzinfo=UTC)
SPAN_SECONDS = 120 * 86400  # four months from BASE
operations = st.lists(
    st.tuples(
        st.sampled_from(["deposit", "bonus", "usage", "usage", "usage", "refund", "adjustment", "expiry"]),
        st.integers(1, 10**12),                 # nano-USD moved
        st.integers(0, SPAN_SECONDS),           # when, after BASE
        st.integers(0, 2),                      # which key
        st.sampled_from(["chat-small", "chat-large"]),
        st.booleans(),                          # a negative adjustment
        st.integers(0, 9),                      # 0: a usage charge without its usage row
    ),
    min_size=1, max_size=40)


def test_random_ledgers_add_up_and_chain_month_to_month(settings):
    @hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(operations, st.sampled_from(["Asia/Singapore", "America/New_York", "UTC"]))
    def check(plan, zone_name):
        zone = ZoneInfo(zone_name)
        with db.session_scope(settings) as session:
            books = Books(session, f"random{next(_numbers)}@example.com", zone_name, ("a", "b", "c"))
            moved = []  # (UTC time, signed amount, kind, model or None)
            for kind, amount, offset, key, model, negative, recorded in plan:
                signed = -amount if kind in ("usage", "expiry") or (kind == "adjustment" and negative) else amount
                at = BASE + timedelta(seconds=offset)
                books.post(kind, signed, at, key=key, model=model, recorded=recorded != 0)
                moved.append((at, signed, kind, model if recorded else None))
            account = books.account
            first = min(at for at, *_rest in moved).astimezone(zone)
            months = [(year, month) for year in range(first.year, 2027) for month in range(1, 13)
                      if (first.year, first.month) <= (year, month) <= (2026, 3)]
            previous_closing = 0
            for year, month in months:
                start, end = statements.month_range(year, month)
                found = statements.statement(session, account, start, end)
                since, until = statements.bounds(zone, start, end)
                assert found.opening_nano == previous_closing
                assert found.opening_nano + found.movements_nano + found.usage_nano == found.closing_nano
                assert found.closing_nano == sum(amount for at, amount, *_ in moved if at < until)
                period = [(amount, kind, model) for at, amount, kind, model in moved if since <= at < until]
                assert found.movements_nano == sum(amount for amount, kind, _model in period if kind != "usage")
                expected_models = defaultdict(int)
                for amount, kind, model in period:
                    if kind == "usage":
                        expected_models[model or statements.UNRECORDED] += amount
                assert {line.label: line.amount_nano for line in found.usage_by_model} == expected_models
                assert sum(line.amount_nano for line in found.usage_by_key) == found.usage_nano
                assert Counter({line.label: line.requests for line in found.usage_by_model}) == Counter(
                    model or statements.UNRECORDED for _amount, kind, model in period if kind == "usage")
                assert -sum(row.cost_nano for row in statements.usage_rows(session, account, start, end)) \
                    == found.usage_nano
                previous_closing = found.closing_nano
            assert previous_closing == ledger.account_balance(session, account.id)
            assert session.get(Account, account.id).balance_nano == previous_closing

    check()
