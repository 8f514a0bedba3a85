"""Console sign-in: a random token in the signed session cookie, its SHA-256 a console_sessions
row. Logging out deletes the row, so a copied cookie stops working too; a password change deletes
the account's other sessions; a deleted or disabled account has none that work."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from functools import wraps

from flask import g, redirect, request, session
from sqlalchemy import delete

from .. import db
from ..api import context
from ..models import Account, ConsoleSession, utcnow

SESSION_DAYS = 14


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(db_session, account: Account) -> None:
    """A new session for account (in db_session's transaction); the cookie's old contents go."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db_session.add(ConsoleSession(id=_hash(token), account_id=account.id, created_at=now,
                                  expires_at=now + timedelta(days=SESSION_DAYS)))
    session.clear()
    session["sid"] = token
    session.permanent = True


def sign_out(db_session) -> None:
    token = session.get("sid")
    if token:
        db_session.execute(delete(ConsoleSession).where(ConsoleSession.id == _hash(token)))
    session.clear()


def end_other_sessions(db_session, account: Account) -> None:
    """Every session of account but this request's."""
    keep = _hash(session.get("sid", ""))
    db_session.execute(delete(ConsoleSession).where(ConsoleSession.account_id == account.id,
                                                    ConsoleSession.id != keep))


def end_all_sessions(db_session, account: Account) -> None:
    db_session.execute(delete(ConsoleSession).where(ConsoleSession.account_id == account.id))


def current_account(db_session) -> Account | None:
    """The signed-in account of this request, or None."""
    token = session.get("sid")
    if not token:
        return None
    row = db_session.get(ConsoleSession, _hash(token))
    if row is None or row.expires_at <= utcnow():
        return None
    account = db_session.get(Account, row.account_id)
    if account is None or account.status != "active" or account.deleted_at is not None:
        return None
    return account


def read_session():
    """The request's read-only SQL session (closed at teardown, as the API's)."""
    return context.session()


def login_required(view):
    """The view runs with g.account, the signed-in account; others are sent to the login page."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        account = current_account(read_session())
        if account is None:
            return redirect(f"/console/login?next={_local_path()}", code=303)
        g.account = account
        return view(*args, **kwargs)

    return wrapper


def _local_path() -> str:
    """This request's path and query, to come back to after logging in (never another site)."""
    from urllib.parse import quote

    path = request.full_path.rstrip("?")
    return quote(path if path.startswith("/console") else "/console/", safe="")


def safe_next(target: str | None) -> str:
    """A `next` parameter only when it is a console path of this site."""
    if target and target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console/"


def write_scope():
    """A read-write SQL transaction for a console action (committed at the block's end)."""
    return db.session_scope(context.settings())
