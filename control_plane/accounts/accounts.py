"""Customer accounts. Each has a wallet ledger account holding its money."""
from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..billing import ledger
from ..errors import ServiceError
from ..models import Account

EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def create_account(session: Session, email: str, is_admin: bool = False) -> Account:
    account = Account(email=email, is_admin=is_admin)
    if not EMAIL.fullmatch(account.email) or len(account.email) > 320:
        raise ServiceError(f"not an email address: {email!r}")
    try:
        with session.begin_nested():
            session.add(account)
            session.flush()
    except IntegrityError:
        raise ServiceError(f"an account with email {account.email} already exists") from None
    ledger.open_wallet(session, account.id)
    session.flush()
    return account


def find_by_email(session: Session, email: str) -> Account | None:
    return session.scalar(select(Account).where(Account.email == email.strip().lower()))


def require_by_email(session: Session, email: str) -> Account:
    account = find_by_email(session, email)
    if account is None:
        raise ServiceError(f"no account with email {email.strip()!r}")
    return account
