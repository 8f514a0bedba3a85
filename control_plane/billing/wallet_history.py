"""An account's ledger as its owner reads it: each transaction that moved its wallet, with the
amount it moved (the console's Transactions page and /api/v1/transactions list the same rows)."""
from __future__ import annotations

from sqlalchemy import Select, select

from ..models import LedgerAccount, LedgerEntry, LedgerTransaction

# Newest first by this column: ix_ledger_entries_ledger_account_newest reads a page in order.
CURSOR = LedgerEntry.transaction_id


def wallet_entries(account_id: int) -> Select:
    """(LedgerTransaction, amount) rows of the account's wallet entries; order and limit are the
    caller's."""
    wallet = select(LedgerAccount.id).where(LedgerAccount.account_id == account_id).scalar_subquery()
    return (
        select(LedgerTransaction, LedgerEntry.amount)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerEntry.ledger_account_id == wallet)
    )
