"""The double-entry ledger: every movement of money is a balanced, idempotent transaction.

Legs name ledger accounts by code ('wallet:<account id>', 'system:usage', …) with signed nano-USD
amounts summing to zero. A wallet leg also moves the owning Account.balance_nano, in the same SQL
transaction, so the cached balance always equals Σ of the wallet's entries.
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import audit, db
from ..models import (
    TRANSACTION_KINDS,
    Account,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    utcnow,
)

USAGE = "system:usage"
ADJUSTMENTS = "system:adjustments"
DEPOSITS = "system:deposits"
BONUSES = "system:bonuses"
# The idempotency key of a batch's charges to one account (usage_posting); `usage:<request id>`
# keys the one request's charge of a transaction recorded before charges were batched.
USAGE_BATCH_PREFIX = "usage-batch:"
SINGLE_USAGE_PREFIX = "usage:"

# Where the money a credit of each kind puts into a wallet comes from.
CREDIT_SOURCES = {"deposit": DEPOSITS, "bonus": BONUSES, "adjustment": ADJUSTMENTS, "refund": USAGE}


def wallet(account_id: int) -> str:
    return f"wallet:{account_id}"


@dataclass(frozen=True)
class Posting:
    kind: str
    idempotency_key: str
    account_id: int | None
    legs: tuple[tuple[str, int], ...]
    description: str = ""
    published: bool = False

    def check(self) -> None:
        if self.kind not in TRANSACTION_KINDS:
            raise ValueError(f"unknown transaction kind {self.kind!r}")
        codes = [code for code, _amount in self.legs]
        if len(codes) < 2 or len(set(codes)) != len(codes):
            raise ValueError("a transaction needs two or more legs on distinct ledger accounts")
        for _code, amount in self.legs:
            if type(amount) is not int or amount == 0:
                raise ValueError(f"leg amounts must be non-zero integers (nano-USD), got {amount!r}")
        if sum(amount for _code, amount in self.legs) != 0:
            raise ValueError(f"unbalanced transaction {self.idempotency_key!r}: legs sum to non-zero")


def open_wallet(session: Session, account_id: int) -> LedgerAccount:
    wallet_account = LedgerAccount(code=wallet(account_id), account_id=account_id)
    session.add(wallet_account)
    return wallet_account


def find(session: Session, idempotency_key: str) -> LedgerTransaction | None:
    return session.scalar(select(LedgerTransaction).where(LedgerTransaction.idempotency_key == idempotency_key))


def post(
    session: Session,
    kind: str,
    idempotency_key: str,
    account_id: int | None,
    legs,
    description: str = "",
    published: bool = False,
) -> LedgerTransaction:
    """Record one transaction, or return the one already recorded under idempotency_key."""
    return record(session, Posting(kind, idempotency_key, account_id, tuple(legs), description, published))


def record(session: Session, posting: Posting) -> LedgerTransaction:
    posting.check()
    existing = find(session, posting.idempotency_key)
    if existing is not None:
        return existing
    try:
        with session.begin_nested():
            (transaction_id,) = post_new(session, [posting])
    except IntegrityError:
        # Another session committed the same key between our look-up and our insert.
        existing = find(session, posting.idempotency_key)
        if existing is None:
            raise
        return existing
    return session.get(LedgerTransaction, transaction_id)


def post_new(session: Session, postings: list[Posting]) -> list[int]:
    """Insert transactions the caller knows are new in this SQL transaction; their ids, in order.
    Bulk inserts of plain rows (a usage batch posts hundreds at once): no ORM objects.

    A key that exists after all raises IntegrityError; the caller rolls back and retries.
    """
    if not postings:
        return []
    for posting in postings:
        posting.check()
    owners = _ledger_accounts(session, {code for posting in postings for code, _amount in posting.legs})
    balance_changes: dict[int, int] = defaultdict(int)
    for posting in postings:
        for code, amount in posting.legs:
            owner = owners[code][1]
            if owner is not None:
                if owner != posting.account_id:
                    raise ValueError(f"{code} does not belong to account {posting.account_id}")
                balance_changes[owner] += amount
    now = utcnow()
    transaction_ids = db.insert_rows(session, LedgerTransaction.__table__, [
        {"kind": p.kind, "idempotency_key": p.idempotency_key, "account_id": p.account_id,
         "description": p.description, "published": p.published, "created_at": now} for p in postings])
    db.insert_rows(session, LedgerEntry.__table__, [
        {"transaction_id": transaction_id, "ledger_account_id": owners[code][0], "amount": amount}
        for transaction_id, posting in zip(transaction_ids, postings, strict=True)
        for code, amount in posting.legs
    ])
    _audit(session, postings, transaction_ids, owners)
    # A fixed order of row locks, so concurrent posters cannot deadlock.
    for owner, change in sorted(balance_changes.items()):
        if change:
            session.execute(
                update(Account).where(Account.id == owner).values(balance_nano=Account.balance_nano + change)
            )
    return list(transaction_ids)


def _audit(session: Session, postings: list[Posting], transaction_ids, owners) -> None:
    """An audit entry for each posting but usage (charges are the usage rows' own record), with the
    wallet's balance before and after it (read before this batch moves it)."""
    audited = [(transaction_id, posting) for transaction_id, posting in zip(transaction_ids, postings, strict=True)
               if posting.kind != "usage"]
    if not audited:
        return
    owned = {posting.account_id for _id, posting in audited if posting.account_id is not None}
    balances = dict(session.execute(select(Account.id, Account.balance_nano).where(Account.id.in_(owned))).all())
    for transaction_id, posting in audited:
        amount = sum(amount for code, amount in posting.legs if owners[code][1] is not None)
        before = balances.get(posting.account_id)
        audit.record_posting(session, transaction_id, posting.kind, posting.account_id, amount, before,
                             posting.description)
        if before is not None:
            balances[posting.account_id] = before + amount


def _ledger_accounts(session: Session, codes: set[str]) -> dict[str, tuple[int, int | None]]:
    rows = session.execute(
        select(LedgerAccount.code, LedgerAccount.id, LedgerAccount.account_id).where(LedgerAccount.code.in_(codes))
    )
    found = {code: (ledger_account_id, owner) for code, ledger_account_id, owner in rows}
    missing = codes - found.keys()
    if missing:
        raise ValueError(f"unknown ledger accounts: {', '.join(sorted(missing))}")
    return found


def account_balance(session: Session, account_id: int) -> int:
    """Σ of the account's wallet entries: the balance of record."""
    return session.scalar(
        select(db.total(LedgerEntry.amount))
        .join(LedgerAccount, LedgerEntry.ledger_account_id == LedgerAccount.id)
        .where(LedgerAccount.account_id == account_id)
    )


def credit(
    session: Session, kind: str, account_id: int, amount: int, idempotency_key: str, description: str
) -> LedgerTransaction:
    """Move `amount` into the account's wallet (negative: out of it), unpublished to Redis."""
    legs = [(wallet(account_id), amount), (CREDIT_SOURCES[kind], -amount)]
    return post(session, kind, idempotency_key, account_id, legs, description)


def adjust(session: Session, account_id: int, amount: int, reason: str) -> LedgerTransaction:
    """An operator's correction; each call is a new transaction."""
    return credit(session, "adjustment", account_id, amount, f"adjustment:{uuid.uuid4()}", reason)


def usage_posting(account_id: int, first_request_id: str, cost: int, description: str) -> Posting:
    """The charges of one account's requests in one drained batch, as one transaction: its usage
    rows name it, each row's cost_nano its share (Σ = the transaction's amount). Keyed by the
    account's first request of the batch (a request is in one batch only). Published: the hot path
    debited Redis before recording them."""
    legs = ((wallet(account_id), -cost), (USAGE, cost))
    return Posting("usage", f"{USAGE_BATCH_PREFIX}{first_request_id}", account_id, legs, description, published=True)
