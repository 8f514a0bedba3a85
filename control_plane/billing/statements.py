"""An account's statement for a date range: its opening balance, each movement of its wallet but
usage, its usage summed per model and per key, and its closing balance — read from the ledger, so
opening + movements + usage = closing exactly and equals Σ of the wallet's entries.

Dates are the account's (Account.time_zone): a range of days [start, end] is the UTC instants
[start 00:00, end + 1 day 00:00) there, so the statements of consecutive ranges chain (one's
closing is the next one's opening). A movement belongs to the period its ledger transaction was
recorded in (created_at, the time of record). Amounts are signed as they moved the wallet: credits
positive, usage, expiries and debits negative.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ..db import total
from ..models import Account, ApiKey, LedgerAccount, LedgerEntry, LedgerTransaction, Usage
from ..settings import time_zone as zone_named
from ..usage_classes import USAGE_CLASSES
from . import ledger

# The statement's list of each kind of non-usage movement. `fee` moves no wallet (it is taken on
# top of a card payment); a kind not named here would be listed with the adjustments, so a
# statement always adds up.
MOVEMENT_LISTS = {"deposit": "credits", "bonus": "bonuses", "refund": "refunds", "adjustment": "adjustments",
                  "expiry": "expiries"}
UNRECORDED = "unrecorded request"  # a usage charge whose usage row is missing
YIELD_PER = 1000


@dataclass(frozen=True)
class Movement:
    at: datetime  # the ledger transaction's time, in the statement's zone
    description: str
    amount_nano: int
    transaction_id: int


@dataclass(frozen=True)
class UsageLine:
    label: str  # a model's name, or a key's "name (prefix…)"
    requests: int
    amount_nano: int  # negative: what the requests took from the wallet


@dataclass(frozen=True)
class Statement:
    account_id: int
    email: str
    time_zone: str
    start: date
    end: date  # included
    opening_nano: int
    closing_nano: int
    credits: list[Movement]
    bonuses: list[Movement]
    refunds: list[Movement]
    adjustments: list[Movement]
    expiries: list[Movement]
    usage_by_model: list[UsageLine]
    usage_by_key: list[UsageLine]
    usage_nano: int  # Σ of the usage lines (of either list)

    @property
    def movements(self) -> dict[str, list[Movement]]:
        """The movements but usage, by list name, in the order a statement shows them."""
        return {name: getattr(self, name) for name in dict.fromkeys(MOVEMENT_LISTS.values())}

    @property
    def movements_nano(self) -> int:
        return sum(movement.amount_nano for listed in self.movements.values() for movement in listed)

    @property
    def requests(self) -> int:
        return sum(line.requests for line in self.usage_by_model)


def zone_or_utc(name: str) -> ZoneInfo:
    """The time zone of that name, UTC if there is none such: a document is never refused for it."""
    return zone_named(name) or ZoneInfo("UTC")


def zone_of(account: Account) -> ZoneInfo:
    """The account's time zone."""
    return zone_or_utc(account.time_zone)


def bounds(zone: ZoneInfo, start: date, end: date) -> tuple[datetime, datetime]:
    """The UTC instants [start 00:00, end + 1 day 00:00) of the days start…end in the zone."""
    return (datetime.combine(start, time(), zone).astimezone(UTC),
            datetime.combine(end + timedelta(days=1), time(), zone).astimezone(UTC))


def _wallet_entries(account: Account):
    """The account's wallet entries joined to their transactions, from the ledger_transactions
    (account_id, id) index: a wallet's transactions all name its account."""
    wallet = select(LedgerAccount.id).where(LedgerAccount.account_id == account.id).scalar_subquery()
    return (LedgerTransaction.__table__.join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id),
            (LedgerTransaction.account_id == account.id, LedgerEntry.ledger_account_id == wallet))


def balance_before(session: Session, account: Account, moment: datetime) -> int:
    """Σ of the account's wallet entries recorded before `moment`."""
    return balances_before(session, account, [moment])[0]


def balances_before(session: Session, account: Account, moments: list[datetime]) -> list[int]:
    """balance_before of each moment, from one pass over the wallet's entries (a list of months'
    opening and closing balances in one query, not two per month)."""
    joined, owned = _wallet_entries(account)
    sums = [total(case((LedgerTransaction.created_at < moment, LedgerEntry.amount), else_=0)) for moment in moments]
    return list(session.execute(select(*sums).select_from(joined)
                                .where(*owned, LedgerTransaction.created_at < max(moments))).one())


def statement(session: Session, account: Account, start: date, end: date) -> Statement:
    """The statement of the days start…end (both included) in the account's zone."""
    if start > end:
        raise ValueError("a statement's start is on or before its end")
    zone = zone_of(account)
    since, until = bounds(zone, start, end)
    joined, owned = _wallet_entries(account)
    in_period = (*owned, LedgerTransaction.created_at >= since, LedgerTransaction.created_at < until)

    listed: dict[str, list[Movement]] = {name: [] for name in MOVEMENT_LISTS.values()}
    rows = session.execute(
        select(LedgerTransaction.id, LedgerTransaction.kind, LedgerTransaction.created_at,
               LedgerTransaction.description, LedgerEntry.amount)
        .select_from(joined).where(*in_period, LedgerTransaction.kind != "usage")
        .order_by(LedgerTransaction.created_at, LedgerTransaction.id))
    for transaction_id, kind, created_at, description, amount in rows:
        listed[MOVEMENT_LISTS.get(kind, "adjustments")].append(
            Movement(created_at.astimezone(zone), description, amount, transaction_id))

    charges = (joined.outerjoin(Usage, Usage.transaction_id == LedgerTransaction.id)
               .outerjoin(ApiKey, ApiKey.id == Usage.key_id))

    def charged_per(*columns):
        """(columns…, requests, amount) of the period's usage charges, grouped by the columns."""
        return session.execute(select(*columns, func.count(), total(_charge_amount())).select_from(charges)
                               .where(*in_period, LedgerTransaction.kind == "usage").group_by(*columns)).all()

    # Sorted here: the dialects place the unrecorded (NULL) group differently.
    by_model = [UsageLine(model or UNRECORDED, requests, amount) for model, requests, amount
                in sorted(charged_per(Usage.model), key=lambda row: (row[0] is None, row[0]))]
    by_key = [UsageLine(UNRECORDED if key_id is None else _key_label(name, prefix), requests, amount)
              for key_id, name, prefix, requests, amount
              in sorted(charged_per(ApiKey.id, ApiKey.name, ApiKey.prefix), key=lambda row: (row[0] is None, row[0]))]

    opening = balance_before(session, account, since)
    usage = sum(line.amount_nano for line in by_model)
    moved = sum(movement.amount_nano for movements in listed.values() for movement in movements)
    return Statement(account.id, account.email, zone.key, start, end, opening, opening + moved + usage,
                     usage_by_model=by_model, usage_by_key=by_key, usage_nano=usage, **listed)


def _charge_amount():
    """What one request's charge moved the wallet by, in a row of a usage transaction's wallet
    entry outer-joined to its usage rows: the row's cost (a transaction charges a batch's
    requests of the account, each row its share), or the entry's amount where no usage row names
    the transaction (unrecorded)."""
    return func.coalesce(-Usage.cost_nano, LedgerEntry.amount)


def _key_label(name: str, prefix: str) -> str:
    return f"{name} ({prefix}…)" if name else f"{prefix}…"


def months(session: Session, account: Account, now: datetime | None = None) -> list[tuple[int, int]]:
    """(year, month) of every month from the account's first wallet movement to now, newest first,
    in its zone; the current month alone while it has none."""
    zone = zone_of(account)
    joined, owned = _wallet_entries(account)
    # Without a scan of every charge: the earliest movement but usage (a wallet is credited before
    # it is charged), and the first entry by id (ix_ledger_entries_ledger_account_newest).
    credited = session.scalar(select(func.min(LedgerTransaction.created_at)).select_from(joined)
                              .where(*owned, LedgerTransaction.kind != "usage"))
    first_entry = session.scalar(select(LedgerTransaction.created_at).select_from(joined).where(*owned)
                                 .order_by(LedgerEntry.transaction_id).limit(1))
    today = (now or datetime.now(UTC)).astimezone(zone)
    oldest = min(moment.astimezone(zone) for moment in (credited, first_entry, today) if moment is not None)
    year, month = today.year, today.month
    found = []
    while (year, month) >= (oldest.year, oldest.month):
        found.append((year, month))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return found


def month_range(year: int, month: int) -> tuple[date, date]:
    """The first and last day of a month."""
    following = date(year + month // 12, month % 12 + 1, 1)
    return date(year, month, 1), following - timedelta(days=1)


@dataclass(frozen=True)
class UsageRow:
    """One charged request of a statement: its charge's time, its usage row (None fields when the
    row is missing) and the amount the ledger took for it (positive)."""

    charged_at: datetime  # the ledger transaction's time, in the statement's zone
    request_id: str
    requested_at: datetime | None
    model: str
    key_name: str
    key_prefix: str
    tokens: dict[str, int]  # by usage class price name (input, cached_input, …)
    cost_nano: int
    transaction_id: int


def usage_rows(session: Session, account: Account, start: date, end: date) -> Iterator[UsageRow]:
    """Each request charged in the statement's period, in ledger order, streamed (yield_per):
    their costs add up to the statement's usage (negated)."""
    zone = zone_of(account)
    since, until = bounds(zone, start, end)
    joined, owned = _wallet_entries(account)
    token_columns = [getattr(Usage, usage_class.column) for usage_class in USAGE_CLASSES]
    query = (
        select(LedgerTransaction.id, LedgerTransaction.created_at, LedgerTransaction.idempotency_key,
               _charge_amount(), Usage.request_id, Usage.created_at, Usage.model, ApiKey.name, ApiKey.prefix,
               *token_columns)
        .select_from(joined.outerjoin(Usage, Usage.transaction_id == LedgerTransaction.id)
                     .outerjoin(ApiKey, ApiKey.id == Usage.key_id))
        .where(*owned, LedgerTransaction.kind == "usage", LedgerTransaction.created_at >= since,
               LedgerTransaction.created_at < until)
        .order_by(LedgerTransaction.created_at, LedgerTransaction.id, Usage.id)
        .execution_options(yield_per=YIELD_PER))
    for row in session.execute(query):
        transaction_id, charged_at, key, amount, request_id, requested_at, model, key_name, key_prefix = row[:9]
        yield UsageRow(
            charged_at.astimezone(zone),
            request_id or key.removeprefix(ledger.SINGLE_USAGE_PREFIX).removeprefix(ledger.USAGE_BATCH_PREFIX),
            requested_at and requested_at.astimezone(zone),
            model or UNRECORDED,
            key_name or "",
            key_prefix or "",
            {usage_class.price: count or 0 for usage_class, count in zip(USAGE_CLASSES, row[9:], strict=True)},
            -amount,
            transaction_id,
        )
