"""Credit expiry (TOLLGATE_CREDIT_EXPIRY_DAYS = N; unset: credit never expires).

Every credit of a wallet (a deposit, a bonus, a positive adjustment or refund) is a lot; debits
(usage, negative adjustments, refunds) use the lots up oldest first (FIFO). N days after a
`deposit` or `bonus` lot was credited, what is left of it expires: an `expiry` transaction from
the wallet to system:expired under the key `expiry:<the lot's transaction id>`, and a mail a week
before (once per lot) while something is left of it.

What is left of a lot needs no replay of the history. Debits take the oldest lots first, so
what remains of the balance sits in the newest ones: walking the lots newest first, each holds
the balance not held by the newer ones, at most its amount less what of it expired before. The
balance used is the smaller of SQL's and Redis's live one (`bal` less `held`): usage Redis
debited that SQL has not recorded yet, and requests in flight, which will be charged to the
oldest lots, are left out, so an expiry never takes more than was truly left nor more than the
live balance. What that holds back expires at a later run, under `expiry:<lot id>:<n>` (n = 2, 3, …).

Each account is done in one SQL transaction holding its row lock (so two runs at once expire
once), the amount taken from Redis first (refunds.taking). Only accounts with a positive balance
and a deposit or bonus lot that is due within the week are looked at.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from .. import db
from ..accounts import notices
from ..errors import ServiceError
from ..hot import redis_keys
from ..hot.connection import client, shard
from ..hot.publish import publish_account
from ..models import Account, LedgerEntry, LedgerTransaction, utcnow
from ..money import format_usd
from ..settings import Settings, time_zone
from . import ledger, refunds, wallet_history

log = logging.getLogger(__name__)

EXPIRED = "system:expired"
LOT_KINDS = ("deposit", "bonus", "adjustment", "refund")
EXPIRING_KINDS = ("deposit", "bonus")
NOTICE_DAYS = 7
PAGE = 200
EXPIRY_PREFIX = "expiry:"


@dataclass(frozen=True)
class Report:
    expired_nano: int = 0
    lots: int = 0  # lots of which something expired
    notices: int = 0  # week-ahead mails queued
    deferred: int = 0  # accounts whose live balance moved meanwhile: done at the next run


@dataclass(frozen=True)
class Lot:
    transaction: LedgerTransaction
    left_nano: int  # what is left of it now
    expiries: int  # its expiry transactions so far


def run(settings: Settings, now: datetime | None = None) -> Report:
    """Expire the lots due at `now` and queue the mails of those due within the week."""
    days = settings.credit_expiry_days
    if days is None:
        return Report()
    now = now or utcnow()
    horizon = now - timedelta(days=days - NOTICE_DAYS)
    report = Report()
    after = 0
    while True:
        with db.read_session(settings) as session:
            page = list(session.scalars(select(Account.id).where(
                Account.id > after, Account.balance_nano > 0,
                exists().where(LedgerTransaction.account_id == Account.id,
                               LedgerTransaction.kind.in_(EXPIRING_KINDS), LedgerTransaction.created_at <= horizon),
            ).order_by(Account.id).limit(PAGE)))
        for account_id in page:
            try:
                expired, lots, queued = _run_account(settings, account_id, days, now)
            except ServiceError as exc:  # the live balance moved between the reading and the take
                log.warning("credit expiry of account %s left for the next run: %s", account_id, exc)
                report = Report(report.expired_nano, report.lots, report.notices, report.deferred + 1)
                continue
            report = Report(report.expired_nano + expired, report.lots + lots, report.notices + queued,
                            report.deferred)
        if len(page) < PAGE:
            return report
        after = page[-1]


def _run_account(settings: Settings, account_id: int, days: int, now: datetime) -> tuple[int, int, int]:
    """(nano expired, lots expired, notices queued) of one account, in one transaction."""
    expired = lots = queued = 0
    with refunds.taking(settings) as (session, take):
        account = session.get(Account, account_id, with_for_update=True)
        for lot in lots_left(session, account, live_balance(session, settings, account)):
            transaction = lot.transaction
            if transaction.kind not in EXPIRING_KINDS:
                continue
            due = transaction.created_at + timedelta(days=days)
            if due <= now:
                take(_expire(session, lot, days), lot.left_nano)
                expired += lot.left_nano
                lots += 1
            elif due <= now + timedelta(days=NOTICE_DAYS):
                queued += _expiring_mail(session, account, lot, due) is not None
    return expired, lots, queued


def live_balance(session: Session, settings: Settings, account: Account) -> int:
    """The smaller of the SQL balance and Redis's `bal` less `held`."""
    publish_account(session, settings, account.id)
    bal, held = client(settings).hmget(redis_keys.account(shard(settings, account.id), account.id), "bal", "held")
    if bal is None:
        raise ServiceError(f"the live balance of account {account.id} vanished from Redis meanwhile")
    return min(account.balance_nano, int(bal) - int(held or 0))


def lots_left(session: Session, account: Account, balance_nano: int) -> list[Lot]:
    """The account's lots of which something is left when the balance is balance_nano, newest first."""
    expired: dict[int, tuple[int, int]] = {}
    for transaction, amount in session.execute(wallet_history.wallet_entries(account.id).where(
            LedgerTransaction.kind == "expiry", LedgerTransaction.idempotency_key.startswith(EXPIRY_PREFIX))):
        lot_id = int(transaction.idempotency_key.removeprefix(EXPIRY_PREFIX).split(":")[0])
        total, count = expired.get(lot_id, (0, 0))
        expired[lot_id] = (total - amount, count + 1)
    found = []
    remaining = balance_nano
    before = None
    while remaining > 0:
        query = wallet_history.wallet_entries(account.id).where(
            LedgerTransaction.kind.in_(LOT_KINDS), LedgerEntry.amount > 0)
        if before is not None:
            query = query.where(LedgerTransaction.id < before)
        page = session.execute(query.order_by(LedgerTransaction.id.desc()).limit(PAGE)).all()
        for transaction, amount in page:
            gone, count = expired.get(transaction.id, (0, 0))
            left = min(amount - gone, remaining)
            if left > 0:
                found.append(Lot(transaction, left, count))
                remaining -= left
            if remaining == 0:
                break
        if len(page) < PAGE:
            break
        before = page[-1][0].id
    return found


def expiry_key(lot_id: int, earlier: int) -> str:
    """`expiry:<lot id>`, and `expiry:<lot id>:<n>` for the n-th expiry of the same lot."""
    return f"{EXPIRY_PREFIX}{lot_id}" if earlier == 0 else f"{EXPIRY_PREFIX}{lot_id}:{earlier + 1}"


def _expire(session: Session, lot: Lot, days: int) -> LedgerTransaction:
    transaction = lot.transaction
    account_id = transaction.account_id
    return ledger.post(
        session, "expiry", expiry_key(transaction.id, lot.expiries), account_id,
        [(ledger.wallet(account_id), -lot.left_nano), (EXPIRED, lot.left_nano)],
        f"Unused credit expired: {transaction.kind} #{transaction.id} of {transaction.created_at:%Y-%m-%d} (UTC), "
        f"{days} days old",
    )


def _expiring_mail(session: Session, account: Account, lot: Lot, due: datetime):
    zone = time_zone(account.time_zone) or ZoneInfo("UTC")
    transaction = lot.transaction
    what = "top-up bonus" if transaction.kind == "bonus" else "top-up"
    return notices.queue(
        session, account, "credit_expiring", f"credit_expiring:{transaction.id}",
        f"{format_usd(lot.left_nano)} of your credit expires on {due.astimezone(zone):%Y-%m-%d}",
        f"{format_usd(lot.left_nano)} of the credit of your {what} of "
        f"{transaction.created_at.astimezone(zone):%Y-%m-%d} is unused. Unused credit expires "
        f"{(due - transaction.created_at).days} days after it was credited: this expires on "
        f"{due.astimezone(zone):%Y-%m-%d %H:%M} ({zone.key}).\n\n"
        f"Your balance and billing: {notices.console_link('/console/billing')}\n",
    )
