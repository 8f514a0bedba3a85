"""Console sign-in: a random token in the signed session cookie, its SHA-256 a console_sessions
row. Logging out deletes the row, so a copied cookie stops working too; a password change deletes
the account's other sessions; a deleted, disabled or suspended account has none that work.

Admin sessions (admin/signin.py, after the password and the second factor) are rows of their own
(admin=True) under another field of the cookie: a customer session never opens an admin page, and
an admin session lasts TOLLGATE_ADMIN_SESSION_MINUTES idle (each admin page moves it on)."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from functools import wraps

from flask import g, redirect, request, session
from sqlalchemy import delete

from .. import audit, db
from ..api import context
from ..models import Account, ConsoleSession, utcnow

SESSION_DAYS = 14
# The cookie's field holding each kind of session's token.
CUSTOMER, ADMIN = "sid", "admin_sid"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(db_session, account: Account, lifetime: timedelta = timedelta(days=SESSION_DAYS),
            admin: bool = False) -> None:
    """A new session for account (in db_session's transaction). A customer sign-in clears the
    cookie's old contents; an admin one replaces only an earlier admin session."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db_session.add(ConsoleSession(id=_hash(token), account_id=account.id, created_at=now,
                                  expires_at=now + lifetime, admin=admin))
    if admin:
        sign_out(db_session, admin=True)
    else:
        session.clear()
    session[ADMIN if admin else CUSTOMER] = token
    session.permanent = True


def sign_out(db_session, admin: bool = False) -> None:
    """End this request's customer session (and the cookie), or only its admin session."""
    token = session.pop(ADMIN, None) if admin else session.get(CUSTOMER)
    if token:
        db_session.execute(delete(ConsoleSession).where(ConsoleSession.id == _hash(token)))
    if not admin:
        admin_token = session.get(ADMIN)
        if admin_token:
            db_session.execute(delete(ConsoleSession).where(ConsoleSession.id == _hash(admin_token)))
        session.clear()


def end_other_sessions(db_session, account: Account) -> None:
    """Every session of account but this request's."""
    keep = _hash(session.get(CUSTOMER, ""))
    db_session.execute(delete(ConsoleSession).where(ConsoleSession.account_id == account.id,
                                                    ConsoleSession.id != keep))


def end_all_sessions(db_session, account: Account) -> None:
    db_session.execute(delete(ConsoleSession).where(ConsoleSession.account_id == account.id))


def current_account(db_session, admin: bool = False) -> Account | None:
    """The account signed in to this request's customer (or admin) session, or None."""
    row = current_session(db_session, admin)
    if row is None:
        return None
    account = db_session.get(Account, row.account_id)
    if account is None or account.status != "active" or account.deleted_at is not None:
        return None
    if admin and not account.is_admin:
        return None
    return account


def current_session(db_session, admin: bool = False) -> ConsoleSession | None:
    """This request's unexpired customer (or admin) session row, or None."""
    token = session.get(ADMIN if admin else CUSTOMER)
    if not token:
        return None
    row = db_session.get(ConsoleSession, _hash(token))
    if row is None or row.expires_at <= utcnow() or row.admin != admin:
        return None
    return row


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
        audit.set_actor(audit.Actor(f"customer {account.email}", "console", account.id, request.remote_addr))
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
