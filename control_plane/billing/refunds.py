"""Money an admin moves in or out of a wallet besides usage: credits and debits (ledger
adjustments, which the customer sees with their reason in Transactions) and refunds of payments
(a deposit or a card checkout paid back: a `refund` transaction from the wallet to
system:deposits). The admin console, the admin API and `tollgate credit` all move money here.

A balance never goes below zero. What binds is the live figure in Redis: `bal` less `held` (what
leases hold for requests in flight, which settle against `bal` later). So money out is taken
from Redis first, by one script that checks and takes atomically, inside the SQL transaction
that records it (marked published, so no one applies it again); if that transaction then fails
to commit, the script's effect is given back. The SQL balance is checked too. Money in is
committed first and then applied to Redis, as every credit is (deposits/ledger.publish). Not
covered: the process dying between the take and the commit leaves Redis lower than the ledger by
the amount, which `tollgate reconcile` reports as that account's drift.

A payment is the `deposit` ledger transaction of a credited on-chain deposit or card checkout;
its refunds have the keys `refund:payment:<its id>:<n>` for n = 0, 1, …. A refund request names n,
the number of refunds of the payment it saw (the page's hidden field, the API's `refunds_seen`):
a repeated request (a double click, a retry) finds its own transaction and refunds once, and one
made from a stale page is refused. At most what was paid less the earlier refunds, and at most
the live balance, is refunded.

Policy: a card top-up is refundable within TOLLGATE_REFUND_WINDOW_HOURS of its payment (unset:
always). A USDT deposit is never paid back by this code: the operator sends the USDT back
themselves and then records it (`sent_back`), whenever that is. What is refundable is the credit
a payment put in the wallet; a card top-up's fee (billing/topup_fees.py) never is. Each refund
gets its credit note (billing/invoices.py) right after its commit.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit, db
from ..deposits import ledger as deposit_ledger
from ..errors import ServiceError
from ..hot import redis_keys
from ..hot.connection import client, run_script, shard
from ..hot.credits import APPLIED_TTL_SECONDS
from ..hot.publish import publish_account
from ..models import Account, Deposit, LedgerTransaction, utcnow
from ..money import NANO_PER_USD, format_usd, usd_to_nano
from ..settings import Settings
from . import invoices, ledger, wallet_history

# One movement is at most $1,000,000 (a card checkout's most, too): far inside the 64-bit
# columns and the 2^53 up to which the hot path's Lua numbers are exact.
MAX_AMOUNT_NANO = 1_000_000 * NANO_PER_USD
# Room for "Refund of payment #<id>: " in front of the reason, within the 500 characters of a
# transaction's description.
MAX_REASON = 400
REFUND_PREFIX = "refund:payment:"
MAX_TRANSACTION_ID = 2**63 - 1

# KEYS[1] the account hash, KEYS[2] this attempt's marker (redis_keys.taken: its own random
# name, never a transaction id, which SQLite may give again after a rollback); ARGV[1] the amount
# to take (nano, positive), ARGV[2] the marker's TTL (s). Returns {result, available}: 1 taken,
# -1 the hash is missing, -2 refused (available, `bal` less `held`, is below the amount).
TAKE = """
local acct = redis.call('HMGET', KEYS[1], 'bal', 'held')
if not acct[1] then return {-1, 0} end
local available = tonumber(acct[1]) - tonumber(acct[2] or 0)
if available < tonumber(ARGV[1]) then return {-2, available} end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'bal', '-' .. ARGV[1])
return {1, available - tonumber(ARGV[1])}
"""
# The same KEYS and ARGV[1]: what TAKE took, given back (once: the marker goes with it).
GIVE_BACK = """
if redis.call('DEL', KEYS[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'bal', ARGV[1])
return 1
"""


class InvalidField(ServiceError):
    """A field of a money form or request that cannot be used (amount, reason, payment): `field`
    names it, so a form shows the message beside it and the API names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Moved:
    transaction: LedgerTransaction
    live: bool  # in the Redis balance already (money out always is; money in once Redis took it)
    repeated: bool = False  # made by an earlier, identical request: nothing moved now


@dataclass(frozen=True)
class Payment:
    """A credited deposit or card checkout of an account, and what of it was refunded."""

    transaction_id: int
    created_at: datetime
    description: str
    amount_nano: int
    refunded_nano: int
    refunds: int
    deposit: Deposit | None  # the on-chain deposit; None for a card checkout

    @property
    def refundable_nano(self) -> int:
        return self.amount_nano - self.refunded_nano


def given_reason(text: str | None) -> str:
    """The reason an admin gave, stripped; InvalidField when there is none (or it is not text) or
    it is too long."""
    reason = text.strip() if isinstance(text, str) else ""
    if not reason:
        raise InvalidField("reason", "Give a reason: it is kept in the audit log")
    if len(reason) > MAX_REASON:
        raise InvalidField("reason", f"A reason is at most {MAX_REASON} characters")
    return reason


def parse_amount(raw) -> int:
    """USD as text ("12.50", "-3") or an exact number (int, Decimal; never a float) in nano-USD,
    within ±MAX_AMOUNT_NANO and at most 9 decimals; InvalidField otherwise."""
    wrong = InvalidField("amount", 'Give a USD amount such as "12.50", with at most 9 decimals')
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
        raise wrong
    try:
        value = Decimal(raw.strip() if isinstance(raw, str) else raw)
    except (InvalidOperation, ValueError):
        raise wrong from None
    if value.is_finite() and value.adjusted() > 15:  # checked before the digits are made
        raise _too_large()
    try:
        nano = usd_to_nano(value)
    except (ValueError, ArithmeticError):
        raise wrong from None
    if abs(nano) > MAX_AMOUNT_NANO:
        raise _too_large()
    return nano


def _too_large() -> InvalidField:
    return InvalidField("amount", f"One movement is at most {format_usd(MAX_AMOUNT_NANO)}")


def credit(settings: Settings, account_id: int, amount_nano: int, reason: str) -> Moved:
    """Credit (positive) or debit (negative) the account: an adjustment with the reason as its
    description. A debit beyond the balance is refused (InvalidField "amount"), nothing changed."""
    reason = given_reason(reason)
    if amount_nano == 0:
        raise InvalidField("amount", "The amount must not be zero")
    if abs(amount_nano) > MAX_AMOUNT_NANO:
        raise _too_large()
    with audit.because(reason):
        if amount_nano > 0:
            with db.session_scope(settings) as session:
                _locked(session, account_id)
                transaction = ledger.adjust(session, account_id, amount_nano, reason)
            return Moved(transaction, deposit_ledger.publish(settings, [transaction.id]))
        with taking(settings) as (session, take):
            _check_balance(_locked(session, account_id), -amount_nano)
            transaction = ledger.adjust(session, account_id, amount_nano, reason)
            take(transaction, -amount_nano)
        return Moved(transaction, True)


def refund(settings: Settings, account_id: int, payment_id: int, amount_nano: int, reason: str,
           refunds_seen: int | None = None, sent_back: bool = False) -> Moved:
    """Pay back amount_nano of one of the account's payments, once per (payment, refunds_seen):
    see the module's docstring. None for refunds_seen: as many as it has now (no protection
    against a repeated request). sent_back: the admin sent a USDT deposit's amount back by hand
    (a USDT deposit is refused without it). InvalidField names what cannot be done."""
    reason = given_reason(reason)
    if amount_nano <= 0:
        raise InvalidField("amount", "A refund is a positive amount")
    if amount_nano > MAX_AMOUNT_NANO:
        raise _too_large()
    if refunds_seen is not None and not 0 <= refunds_seen < 2**31:
        raise InvalidField("refunds_seen", "The number of refunds seen is a whole number from 0")
    with audit.because(reason), taking(settings) as (session, take):
        owner = _locked(session, account_id)
        paid = payment(session, account_id, payment_id)
        if paid is None:
            raise InvalidField("payment", f"Account {account_id} has no payment #{payment_id}")
        number = paid.refunds if refunds_seen is None else refunds_seen
        earlier = ledger.find(session, refund_key(payment_id, number))
        if earlier is not None:
            return Moved(earlier, True, repeated=True)
        if number != paid.refunds:
            raise InvalidField("payment", f"Payment #{payment_id} has {paid.refunds} refunds now, not {number}: "
                                          "reload the page to see them, then try again")
        check_policy(settings, paid, sent_back)
        if amount_nano > paid.refundable_nano:
            raise InvalidField("amount", f"At most {format_usd(paid.refundable_nano)} of payment #{payment_id} can "
                                         f"be refunded (paid {format_usd(paid.amount_nano)}, refunded "
                                         f"{format_usd(paid.refunded_nano)} before)")
        _check_balance(owner, amount_nano)
        transaction = ledger.post(session, "refund", refund_key(payment_id, number), account_id,
                                  [(ledger.wallet(account_id), -amount_nano), (ledger.DEPOSITS, amount_nano)],
                                  f"Refund of payment #{payment_id}: {reason}")
        take(transaction, amount_nano)
    invoices.issue_pending_now(settings)
    return Moved(transaction, True)


def check_policy(settings: Settings, paid: Payment, sent_back: bool = False, now: datetime | None = None) -> None:
    """InvalidField ("payment") when the refund policy does not let this payment be refunded now:
    a USDT deposit not sent back by hand, a card top-up past the refund window."""
    if paid.deposit is not None:
        if not sent_back:
            raise InvalidField("payment", f"Payment #{paid.transaction_id} is a USDT deposit on {paid.deposit.chain}: "
                                          "it is not refunded automatically. Send the USDT back yourself, then "
                                          "confirm that you sent it back")
        return
    ends = refund_window_end(settings, paid)
    if ends is not None and (now or utcnow()) > ends:
        raise InvalidField("payment", f"Payment #{paid.transaction_id} is past the refund window: card top-ups are "
                                      f"refundable for {settings.refund_window_hours} hours after payment")


def refund_window_end(settings: Settings, paid: Payment) -> datetime | None:
    """Until when a card top-up can be refunded (None: no window; a USDT deposit has none)."""
    if settings.refund_window_hours is None or paid.deposit is not None:
        return None
    return paid.created_at + timedelta(hours=settings.refund_window_hours)


def refund_key(payment_id: int, number: int) -> str:
    return f"{REFUND_PREFIX}{payment_id}:{number}"


def payments(session: Session, account_id: int, limit: int = 50) -> list[Payment]:
    """The account's newest payments (at most `limit`), newest first, with their refunds."""
    rows = session.execute(wallet_history.wallet_entries(account_id).where(LedgerTransaction.kind == "deposit")
                           .order_by(LedgerTransaction.id.desc()).limit(limit)).all()
    return _payments(session, account_id, rows)


def payment(session: Session, account_id: int, payment_id: int) -> Payment | None:
    """The account's payment with this ledger transaction id, or None (also for any other id)."""
    if not 0 < payment_id <= MAX_TRANSACTION_ID:
        return None
    rows = session.execute(wallet_history.wallet_entries(account_id).where(
        LedgerTransaction.kind == "deposit", LedgerTransaction.id == payment_id)).all()
    found = _payments(session, account_id, rows)
    return found[0] if found else None


def _payments(session: Session, account_id: int, rows) -> list[Payment]:
    """(transaction, amount) rows of deposit transactions as Payments: their refunds and deposits."""
    refunded: dict[int, list[int]] = {}
    for transaction, amount in session.execute(wallet_history.wallet_entries(account_id).where(
            LedgerTransaction.kind == "refund", LedgerTransaction.idempotency_key.startswith(REFUND_PREFIX))):
        paid_id = int(transaction.idempotency_key.removeprefix(REFUND_PREFIX).split(":")[0])
        refunded.setdefault(paid_id, []).append(-amount)
    ids = [transaction.id for transaction, _amount in rows]
    deposits = {row.transaction_id: row for row in session.scalars(select(Deposit).where(
        Deposit.transaction_id.in_(ids)))} if ids else {}
    return [Payment(transaction.id, transaction.created_at, transaction.description, amount,
                    sum(refunded.get(transaction.id, ())), len(refunded.get(transaction.id, ())),
                    deposits.get(transaction.id))
            for transaction, amount in rows]


def _locked(session: Session, account_id: int) -> Account:
    """The account's row, locked for this transaction: its money moves one change at a time."""
    account = session.get(Account, account_id, with_for_update=True) if 0 < account_id < 2**31 else None
    if account is None:
        raise ServiceError(f"no account with id {account_id}")
    return account


def _check_balance(account: Account, amount_nano: int) -> None:
    if account.balance_nano < amount_nano:
        raise InvalidField("amount", f"{format_usd(amount_nano)} is more than the balance, "
                                     f"{format_usd(account.balance_nano)}: a balance never goes below zero")


@contextmanager
def taking(settings: Settings) -> Iterator[tuple[Session, object]]:
    """A SQL transaction and `take(transaction, amount)`, which takes the amount of a transaction
    posted in it from the Redis balance (InvalidField if less is available). Committed at the
    block's end; if the block or the commit fails, what was taken is given back."""
    taken: list[tuple[list[str], int]] = []

    def take(transaction: LedgerTransaction, amount: int) -> None:
        keys = _take(session, settings, transaction, amount)
        taken.append((keys, amount))

    try:
        with db.session_scope(settings) as session:
            yield session, take
    except BaseException:
        for keys, amount in taken:
            run_script(settings, GIVE_BACK, keys, [amount])
        raise
    if taken:  # committed: the markers have done their work
        client(settings).delete(*(keys[1] for keys, _amount in taken))


def _take(session: Session, settings: Settings, transaction: LedgerTransaction, amount: int) -> list[str]:
    account_id = transaction.account_id
    account_shard = shard(settings, account_id)
    keys = [redis_keys.account(account_shard, account_id), redis_keys.taken(account_shard, uuid.uuid4().hex)]
    # The hash made now leaves this transaction out (it is not published yet); TAKE applies it.
    publish_account(session, settings, account_id)
    result, available = run_script(settings, TAKE, keys, [amount, APPLIED_TTL_SECONDS])
    if result == -1:
        raise ServiceError(f"the live balance of account {account_id} vanished from Redis meanwhile; try again")
    if result == -2:
        raise InvalidField("amount", f"{format_usd(amount)} is more than the live balance allows: "
                                     f"{format_usd(available)} (the balance less what requests in flight hold). "
                                     "A balance never goes below zero; nothing was changed")
    transaction.published = True
    return keys
