"""Applying committed ledger transactions (top-ups, credits, adjustments) to the Redis balance,
exactly once each."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import LedgerAccount, LedgerEntry, LedgerTransaction
from ..settings import Settings
from . import redis_keys
from .connection import run_script, shard
from .publish import publish_account

APPLIED_TTL_SECONDS = 30 * 24 * 3600
UNPUBLISHED_PAGE = 1000

# KEYS[1] account hash, KEYS[2] applied marker; ARGV[1] amount (nano), ARGV[2] marker TTL (s).
# 1 applied now, 0 applied before, -1 the account hash is missing (publish the account first).
APPLY_CREDIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'bal', ARGV[1])
return 1
"""


def apply_credit(session: Session, settings: Settings, transaction: LedgerTransaction) -> None:
    """Apply a committed, unpublished transaction to the Redis balance exactly once, then mark
    it published (the caller commits)."""
    amount = session.scalar(
        select(LedgerEntry.amount)
        .join(LedgerAccount, LedgerEntry.ledger_account_id == LedgerAccount.id)
        .where(LedgerEntry.transaction_id == transaction.id, LedgerAccount.account_id == transaction.account_id)
    )
    if amount is not None:
        account_shard = shard(settings, transaction.account_id)
        keys = [
            redis_keys.account(account_shard, transaction.account_id),
            redis_keys.applied(account_shard, transaction.id),
        ]
        args = [amount, APPLIED_TTL_SECONDS]
        if run_script(settings, APPLY_CREDIT, keys, args) == -1:
            # The new hash leaves this (unpublished) transaction out; apply it on top.
            publish_account(session, settings, transaction.account_id)
            run_script(settings, APPLY_CREDIT, keys, args)
    transaction.published = True


def apply_unpublished(session: Session, settings: Settings) -> int:
    """Apply every unpublished transaction (a crash may have left some); how many."""
    applied = 0
    while True:
        page = list(
            session.scalars(
                select(LedgerTransaction)
                .where(~LedgerTransaction.published)
                .order_by(LedgerTransaction.id)
                .limit(UNPUBLISHED_PAGE)
            )
        )
        for transaction in page:
            apply_credit(session, settings, transaction)
        applied += len(page)
        if len(page) < UNPUBLISHED_PAGE:
            return applied
