"""Suspension: an admin stops an account until an admin reactivates it.

Its keys stay active in SQL but are published as "suspended" (hot/publish.py), so the gateway and
/api/v1 answer them 401 `account_suspended`, which says the account is suspended, once the key
cache lets go (within 2 s); its console and admin sessions end, and no new one starts
(console/sessions.py lets only active accounts in). A deleted account (status disabled, or
deleted_at set) is neither suspended nor reactivated: it stays deleted.

Each change is an audited update of the account's status, with the reason given. `suspend` and
`reactivate` change SQL (the caller commits, then publishes with `publish`); `change` does it all.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from sqlalchemy import delete
from sqlalchemy.orm import Session

from .. import audit, db, logs
from ..billing.refunds import given_reason
from ..errors import ServiceError
from ..hot import publish as hot_publish
from ..models import Account, ConsoleSession
from ..settings import Settings

log = logging.getLogger(__name__)


def is_deleted(account: Account) -> bool:
    return account.status == "disabled" or account.deleted_at is not None


def suspend(session: Session, account: Account, reason: str) -> bool:
    """Suspend the account (a reason is required); False if it already was."""
    reason = given_reason(reason)
    _refuse_deleted(account, "suspended")
    if account.status == "suspended":
        return False
    with audit.because(reason):
        account.status = "suspended"
        session.flush()
    # Every session of it ends, console and admin alike.
    session.execute(delete(ConsoleSession).where(ConsoleSession.account_id == account.id))
    return True


def reactivate(session: Session, account: Account, reason: str = "") -> bool:
    """Make a suspended account active again; False if it was not suspended."""
    _refuse_deleted(account, "reactivated")
    if account.status != "suspended":
        return False
    with audit.because(reason.strip()):
        account.status = "active"
        session.flush()
    return True


def _refuse_deleted(account: Account, what: str) -> None:
    if is_deleted(account):
        raise ServiceError(f"account {account.id} ({account.email}) was deleted by its owner; it cannot be {what}")


def publish(settings: Settings, account_id: int) -> bool:
    """After the commit: every key of the account published again with its status; False (logged)
    if Redis could not take it (`tollgate publish` does once Redis answers)."""
    try:
        with db.session_scope(settings) as session:
            hot_publish.publish_account_keys(session, settings, account_id)
    except (redis.RedisError, ServiceError) as exc:
        log.error("suspension of account %s saved but not published: %s", account_id, logs.error_summary(exc))
        return False
    return True


@dataclass(frozen=True)
class Change:
    account: Account
    changed: bool  # False: it already was so
    live: bool  # the gateway has it (else after `tollgate publish`)


def change(settings: Settings, account_id: int, suspended: bool, reason: str) -> Change:
    """Suspend (suspended) or reactivate the account, commit, and publish its keys."""
    with db.session_scope(settings) as session:
        account = session.get(Account, account_id, with_for_update=True) if 0 < account_id < 2**31 else None
        if account is None:
            raise ServiceError(f"no account with id {account_id}")
        changed = suspend(session, account, reason) if suspended else reactivate(session, account, reason)
    return Change(account, changed, publish(settings, account.id))
