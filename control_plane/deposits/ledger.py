"""Deposits into the double-entry ledger, exactly once.

A watcher records each token transfer with `record_deposit` (idempotent on chain, tx hash, log
index) and, once the chain's confirmation rule holds, marks it confirmed and calls
`credit_deposit`. That posts a `deposit` transaction under the key
`deposit:<chain>:<tx hash>:<log index>` and, when the top-up reaches a bonus tier, a separate
`bonus` transaction under `bonus:<that key>`. Both are ledger-idempotent, and the account's row is
locked first, so repeated or concurrent calls credit once.

Minimum deposit (TOLLGATE_MIN_DEPOSIT_USD): a deposit that, together with the account's other
uncredited (below_minimum) deposits, stays under it is recorded as below_minimum and not credited;
the deposit that brings the sum to the minimum credits all of them. The bonus tier is chosen by
that sum (the top-up), and each deposit's bonus is its own amount × percent, rounded half-up to the
nano-USD once per deposit.

Services never commit; `credit_and_publish` (for watchers and the card webhook) commits, then
applies the new transactions to Redis like `tollgate credit` does. If Redis does not answer, the
worker applies them later (they stay unpublished in SQL).
"""
from __future__ import annotations

import logging
from decimal import Decimal

import redis
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import db
from ..accounts import alerts
from ..billing import ledger
from ..errors import ServiceError
from ..hot import credits
from ..models import Account, Deposit, LedgerTransaction
from ..money import format_usd
from ..settings import Settings
from .tokens import CHAINS, USDT, Token, base_units_to_nano, token_for

log = logging.getLogger(__name__)


def deposit_key(chain: str, tx_hash: str, log_index: int) -> str:
    return f"deposit:{chain}:{tx_hash}:{log_index}"


def bonus_key(idempotency_key: str) -> str:
    return f"bonus:{idempotency_key}"


def normal_tx_hash(chain: str, tx_hash: str) -> str:
    """One spelling per transaction: lowercase hex, with 0x on EVM chains and without on TRON."""
    text = tx_hash.strip().lower()
    text = text.removeprefix("0x")
    return text if chain == "tron" else "0x" + text


def bonus_percent(settings: Settings, topup_nano: int) -> Decimal:
    """The percent of the highest tier whose USD threshold the top-up reaches (0 below all)."""
    percent = Decimal(0)
    for threshold_nano, tier_percent in settings.topup_bonus_tiers:
        if topup_nano >= threshold_nano:
            percent = tier_percent
    return percent


def bonus_nano(amount_nano: int, percent: Decimal) -> int:
    """amount × percent / 100, rounded half-up to the nano-USD, in integers only."""
    numerator, denominator = percent.as_integer_ratio()
    scaled = amount_nano * numerator
    divisor = 100 * denominator
    return (2 * scaled + divisor) // (2 * divisor)


def record_deposit(
    session: Session,
    *,
    chain: str,
    tx_hash: str,
    log_index: int,
    account_id: int,
    token_contract: str,
    amount: int,
    block_number: int,
    block_hash: str,
    status: str = "seen",
    allowed: tuple[Token, ...] = USDT,
) -> Deposit:
    """The deposit row for this transfer, inserted once (a second sighting returns the first row),
    its owner's "deposit seen" mail queued with it; `allowed` is the token allow-list in force
    (tokens.accepted(settings))."""
    if chain not in CHAINS:
        raise ServiceError(f"unknown chain {chain!r}")
    if status not in ("seen", "confirmed"):
        raise ServiceError(f"a new deposit is seen or confirmed, not {status!r}")
    token = token_for(chain, token_contract, allowed)
    tx_hash = normal_tx_hash(chain, tx_hash)
    existing = _find(session, chain, tx_hash, log_index)
    if existing is not None:
        return existing
    deposit = Deposit(
        chain=chain, tx_hash=tx_hash, log_index=log_index, account_id=account_id,
        token_contract=token.contract, amount=amount, amount_nano=base_units_to_nano(amount, token.decimals),
        block_number=block_number, block_hash=block_hash, status=status,
    )
    try:
        with session.begin_nested():
            session.add(deposit)
            session.flush()
    except IntegrityError:
        existing = _find(session, chain, tx_hash, log_index)
        if existing is None:
            raise
        return existing
    alerts.deposit_seen(session, deposit)
    return deposit


def _find(session: Session, chain: str, tx_hash: str, log_index: int) -> Deposit | None:
    return session.scalar(
        select(Deposit).where(Deposit.chain == chain, Deposit.tx_hash == tx_hash, Deposit.log_index == log_index)
    )


def credit_deposit(session: Session, settings: Settings, deposit: Deposit) -> list[LedgerTransaction]:
    """Credit a confirmed deposit (and any below-minimum ones it completes) once, queueing a
    "credited" mail for each; returns the ledger transactions this call posted (none when already
    credited or still below the minimum)."""
    # Serialize every crediting of this account (PostgreSQL; SQLite's writers already are), so
    # two concurrent deposits cannot both see the other as uncredited, then re-read the row.
    session.execute(select(Account.id).where(Account.id == deposit.account_id).with_for_update())
    session.refresh(deposit)
    if deposit.status == "credited":
        return []
    if deposit.status not in ("confirmed", "below_minimum"):
        raise ServiceError(f"deposit {deposit.id} is {deposit.status}, not confirmed; it cannot be credited")
    waiting = list(
        session.scalars(
            select(Deposit)
            .where(Deposit.account_id == deposit.account_id, Deposit.status == "below_minimum",
                   Deposit.id != deposit.id)
            .order_by(Deposit.id)
        )
    )
    group = [*waiting, deposit]
    topup = sum(item.amount_nano for item in group)
    if topup < settings.min_deposit_nano or topup == 0:
        deposit.status = "below_minimum"
        session.flush()
        return []
    percent = bonus_percent(settings, topup)
    posted = []
    for item in sorted(group, key=lambda row: row.id):
        key = deposit_key(item.chain, item.tx_hash, item.log_index)
        if item.amount_nano:
            transaction = ledger.credit(
                session, "deposit", item.account_id, item.amount_nano, key,
                f"USDT deposit on {item.chain}: {format_usd(item.amount_nano)} (tx {item.tx_hash})",
            )
            item.transaction_id = transaction.id
            posted.append(transaction)
            bonus = bonus_nano(item.amount_nano, percent)
            if bonus:
                posted.append(ledger.credit(
                    session, "bonus", item.account_id, bonus, bonus_key(key),
                    f"Top-up bonus {percent}% on {format_usd(item.amount_nano)}",
                ))
            _credited_mail(session, posted[posted.index(transaction):], item.amount_nano + bonus)
        item.status = "credited"
    session.flush()
    return posted


def credit_topup(session: Session, settings: Settings, account_id: int, amount_nano: int, idempotency_key: str,
                 description: str) -> list[LedgerTransaction]:
    """A top-up that is not on chain (card checkout): the deposit and its tier bonus, once."""
    locked = session.execute(select(Account.id).where(Account.id == account_id).with_for_update()).first()
    if locked is None:
        raise ServiceError(f"no account with id {account_id}")
    if ledger.find(session, idempotency_key) is not None:
        return []
    posted = [ledger.credit(session, "deposit", account_id, amount_nano, idempotency_key, description)]
    percent = bonus_percent(settings, amount_nano)
    bonus = bonus_nano(amount_nano, percent)
    if bonus:
        posted.append(ledger.credit(session, "bonus", account_id, bonus, bonus_key(idempotency_key),
                                    f"Top-up bonus {percent}% on {format_usd(amount_nano)}"))
    _credited_mail(session, posted, amount_nano + bonus)
    return posted


def _credited_mail(session: Session, transactions: list[LedgerTransaction], amount_nano: int) -> None:
    """The owner's mail of a credited top-up: its deposit transaction and its bonus, if any."""
    deposit = transactions[0]
    alerts.deposit_credited(session, deposit.account_id, amount_nano,
                            "\n".join(transaction.description for transaction in transactions),
                            deposit.idempotency_key)


def publish(settings: Settings, transaction_ids) -> bool:
    """Apply committed credits to the Redis balance (idempotent); False when Redis did not answer
    (the worker applies them later)."""
    try:
        with db.session_scope(settings) as session:
            for transaction_id in transaction_ids:
                transaction = session.get(LedgerTransaction, transaction_id)
                if transaction is not None and not transaction.published:
                    credits.apply_credit(session, settings, transaction)
    except redis.RedisError as exc:
        log.warning("credits %s saved but not yet in Redis (the worker applies them): %s", transaction_ids, exc)
        return False
    return True


def credit_and_publish(settings: Settings, deposit_id: int) -> list[int]:
    """Commit the crediting of a deposit, then publish it; the new ledger transaction ids."""
    with db.session_scope(settings) as session:
        deposit = session.get(Deposit, deposit_id)
        if deposit is None:
            raise ServiceError(f"no deposit with id {deposit_id}")
        ids = [transaction.id for transaction in credit_deposit(session, settings, deposit)]
    publish(settings, ids)
    return ids
