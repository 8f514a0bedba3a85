"""Alert mails to account owners, queued in the notices outbox (accounts/notices.py).

Each is sent once per crossing, not once per request:
- a balance below the account's threshold (Account.balance_alert_nano): `balance_alert_sent` is
  set when it is mailed and cleared, without a mail, once the balance is back at or above it;
- a key at 80 % and at 100 % of its spend limit: `limit_alert_percent` is the highest share
  mailed, and is lowered again, without a mail, when a raised limit puts the spend below it;
- a deposit seen on chain, and a deposit or card top-up credited: once per deposit (the watcher
  may see a transfer many times).

`check` looks at the balances and keys' spend (the worker calls it every minute or so). Only
accounts and keys that have a threshold or a limit are read, a page at a time. Each flag moves
by a conditional UPDATE (only if it still has the value read), so two concurrent checks queue one
mail; the flags are moved by statements, not the ORM, as they are no one's change to audit.
"""
from __future__ import annotations

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from ..errors import ServiceError
from ..models import Account, ApiKey, Deposit, LedgerAccount, LedgerEntry
from ..money import format_usd
from ..settings import Settings
from . import api_keys, notices

PAGE = 500
LIMIT_SHARES = (100, 80)  # percent of a key's limit that is mailed, highest first
MAX_THRESHOLD_NANO = 1_000_000 * 1_000_000_000  # $1,000,000


def set_balance_alert(session: Session, account: Account, amount_nano: int | None) -> None:
    """Mail the owner when the balance falls below amount_nano (None: never). A new threshold is
    armed afresh: a balance already below it is mailed at the next check."""
    if amount_nano is not None and (type(amount_nano) is not int or not 0 < amount_nano <= MAX_THRESHOLD_NANO):
        raise ServiceError(f"a balance alert is a positive amount of at most {format_usd(MAX_THRESHOLD_NANO)}")
    if amount_nano != account.balance_alert_nano:
        account.balance_alert_nano = amount_nano
        account.balance_alert_sent = False
        session.flush()


def check(session: Session, settings: Settings) -> int:
    """Queue the mails of balances and keys that crossed their thresholds since the last check,
    and re-arm those back above them; how many mails were queued."""
    return _check_balances(session) + _check_keys(session, settings)


def _check_balances(session: Session) -> int:
    below = Account.balance_nano < Account.balance_alert_nano
    changed = and_(Account.balance_alert_nano.is_not(None), Account.deleted_at.is_(None),
                   or_(and_(below, ~Account.balance_alert_sent), and_(~below, Account.balance_alert_sent)))
    queued = 0
    after = 0
    while True:
        page = list(session.scalars(select(Account).where(Account.id > after, changed).order_by(Account.id)
                                    .limit(PAGE)))
        for account in page:
            crossed = account.balance_nano < account.balance_alert_nano
            if _flip(session, Account, account.id, Account.balance_alert_sent, account.balance_alert_sent, crossed) \
                    and crossed:
                queued += _balance_low(session, account) is not None
        if len(page) < PAGE:
            return queued
        after = page[-1].id


def _flip(session: Session, model, row_id: int, column, seen, value) -> bool:
    """Set the column to value if it still holds what was read; whether it did."""
    return session.execute(update(model).where(model.id == row_id, column == seen).values({column: value})).rowcount == 1


def _balance_low(session: Session, account: Account):
    wallet = select(LedgerAccount.id).where(LedgerAccount.account_id == account.id).scalar_subquery()
    last = session.scalar(select(func.max(LedgerEntry.transaction_id)).where(LedgerEntry.ledger_account_id == wallet))
    return notices.queue(
        session, account, "balance_low", f"balance_low:{account.id}:{account.balance_alert_nano}:{last}",
        f"Your balance is below {format_usd(account.balance_alert_nano)}",
        f"Your balance is {format_usd(account.balance_nano)}, below the alert threshold of "
        f"{format_usd(account.balance_alert_nano)} you set.\n\n"
        f"Top up or see your billing: {notices.console_link('/console/billing')}\n\n"
        f"This mail comes once each time the balance falls below the threshold; change the threshold "
        f"in Settings: {notices.console_link('/console/settings')}\n",
    )


def _check_keys(session: Session, settings: Settings) -> int:
    queued = 0
    after = 0
    while True:
        page = list(session.scalars(
            select(ApiKey).join(Account, Account.id == ApiKey.account_id)
            .where(ApiKey.id > after, ApiKey.limit_nano.is_not(None), ApiKey.status == "active",
                   Account.deleted_at.is_(None))
            .order_by(ApiKey.id).limit(PAGE)))
        spent = api_keys.spent_nano(session, settings, page)
        for key in page:
            share, mailed = reached_share(spent[key.id], key.limit_nano), key.limit_alert_percent
            if share != mailed and _flip(session, ApiKey, key.id, ApiKey.limit_alert_percent, mailed, share) \
                    and share > mailed:
                queued += _key_limit(session, key, share, spent[key.id]) is not None
        if len(page) < PAGE:
            return queued
        after = page[-1].id


def reached_share(spent_nano: int, limit_nano: int) -> int:
    """The highest of LIMIT_SHARES the spend has reached (0 for none), in integers."""
    for share in LIMIT_SHARES:
        if spent_nano * 100 >= limit_nano * share:
            return share
    return 0


def _key_limit(session: Session, key: ApiKey, share: int, spent: int):
    name = f'"{key.name}" ({key.prefix}…)' if key.name else f"{key.prefix}…"
    stopped = ("It is refused from now on until you raise its limit." if share == 100
               else "It is refused once it reaches the limit.")
    return notices.queue(
        session, key.account, "key_limit", f"key_limit:{key.id}:{share}:{key.limit_nano}:{spent}",
        f"API key {name} has used {share}% of its spend limit",
        f"API key {name} has spent {format_usd(spent)} of its {format_usd(key.limit_nano)} spend limit "
        f"({share}%). {stopped}\n\nSee or change its limit: {notices.console_link('/console/keys')}\n",
    )


def deposit_seen(session: Session, deposit: Deposit):
    """Queue the mail of a deposit first seen on chain (once per deposit)."""
    account = session.get(Account, deposit.account_id)
    return notices.queue(
        session, account, "deposit_seen", f"deposit_seen:{deposit.chain}:{deposit.tx_hash}:{deposit.log_index}",
        f"Deposit of {format_usd(deposit.amount_nano)} seen on {deposit.chain}",
        f"We have seen your USDT deposit of {format_usd(deposit.amount_nano)} on {deposit.chain} "
        f"(tx {deposit.tx_hash}). It is credited to your balance once the chain has confirmed it; "
        f"you get another mail then.\n\nYour billing: {notices.console_link('/console/billing')}\n",
    )


def deposit_credited(session: Session, account_id: int, amount_nano: int, description: str, key: str):
    """Queue the mail of a top-up credited to the balance (once per ledger key of its deposit
    transaction); description says what it was, a line per posting."""
    account = session.get(Account, account_id)
    return notices.queue(
        session, account, "deposit_credited", f"deposit_credited:{key}",
        f"{format_usd(amount_nano)} credited to your balance",
        f"{format_usd(amount_nano)} has been credited to your balance:\n{description}\n\n"
        f"Your billing: {notices.console_link('/console/billing')}\n",
    )
