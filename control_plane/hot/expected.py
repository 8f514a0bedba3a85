"""What the hot counters must be, from SQL and the usage not drained yet: an account's balance
and a key's spend. Used when a hash is created (publish.py) and when proving they agree
(billing/reconcile.py)."""
from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..db import total
from ..errors import ServiceError
from ..models import Account, LedgerAccount, LedgerEntry, LedgerTransaction, Usage, UsageQuarantine
from ..settings import Settings
from . import redis_keys, usage_records
from .connection import client

STREAM_PAGE = 1000


def initial_balance(session: Session, settings: Settings, account_shard: int, account_id: int) -> int:
    return expected_balance(session, account_id, undrained(settings, account_shard, "acct", account_id))


def expected_balance(session: Session, account_id: int, undrained: dict[str, int]) -> int:
    """What Redis `bal` must be: the SQL balance of the transactions already applied to Redis
    (published), minus the usage Redis debited that SQL has not recorded yet (`undrained`:
    request id -> cost, read from the stream before this) or has quarantined. One statement, so
    one snapshot, even while the worker drains."""
    unpublished = (
        select(total(LedgerEntry.amount))
        .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerEntry.ledger_account_id == LedgerAccount.id)
        .where(LedgerAccount.account_id == account_id, ~LedgerTransaction.published)
        .scalar_subquery()
    )
    balance = session.scalar(
        select(
            Account.balance_nano - unpublished + _recorded_cost(undrained)
            - _quarantined_cost(UsageQuarantine.account_id, account_id, undrained)
        ).where(Account.id == account_id)
    )
    if balance is None:
        raise ServiceError(f"no account with id {account_id}")
    return balance - sum(undrained.values())


def initial_spent(session: Session, settings: Settings, account_shard: int, key_id: int) -> int:
    return expected_spent(session, key_id, undrained(settings, account_shard, "key", key_id))


def expected_spent(session: Session, key_id: int, undrained: dict[str, int]) -> int:
    """What Redis `spent` must be: Σ cost of the key's usage recorded in SQL or quarantined, plus
    the usage still in the stream (`undrained`, read before this). One statement, one snapshot."""
    recorded = select(total(Usage.cost_nano)).where(Usage.key_id == key_id).scalar_subquery()
    quarantined = _quarantined_cost(UsageQuarantine.key_id, key_id, undrained)
    return session.scalar(select(recorded + quarantined - _recorded_cost(undrained))) + sum(undrained.values())


def undrained(settings: Settings, account_shard: int, field: str, value: int) -> dict[str, int]:
    """request id -> cost of the shard's stream records whose `field` (acct or key) is `value`."""
    stream = redis_keys.usage_stream(account_shard)
    found: dict[str, int] = {}
    start = "-"
    while True:
        page = client(settings).xrange(stream, min=start, count=STREAM_PAGE)
        for _entry_id, fields in page:
            for record in usage_records.valid_records(fields):
                owner = record.account_id if field == "acct" else record.key_id
                if owner == value:
                    found[record.request_id] = record.cost_nano
        if len(page) < STREAM_PAGE:
            return found
        start = "(" + page[-1][0]


def _recorded_cost(undrained: dict[str, int]):
    """Σ cost of those stream records that SQL has already recorded (drained meanwhile)."""
    return (
        select(total(Usage.cost_nano))
        .where(Usage.request_id.in_(list(undrained)))
        .scalar_subquery()
    )


def _quarantined_cost(owner, value: int, undrained: dict[str, int]):
    """Σ cost of the quarantined records whose `owner` column is `value` and whose cost could be
    read (Redis debited them when it settled them), except those still in the stream
    (`undrained` counts them)."""
    return (
        select(total(UsageQuarantine.cost_nano))
        .where(owner == value, UsageQuarantine.cost_nano.is_not(None),
               or_(UsageQuarantine.request_id.is_(None), UsageQuarantine.request_id.not_in(list(undrained))))
        .scalar_subquery()
    )
