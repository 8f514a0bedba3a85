"""What every admin page needs: `admin_required` (an admin session, moved on at each page), the
admin as the audit log's actor, and the request's SQL sessions."""
from __future__ import annotations

from datetime import timedelta
from functools import wraps
from urllib.parse import quote

from flask import g, redirect, request

from .. import audit
from ..api import context
from ..console.sessions import current_account, current_session, read_session, write_scope
from ..models import ConsoleSession, utcnow

__all__ = ["admin_actor", "admin_required", "read_session", "write_scope"]


def admin_actor(account) -> audit.Actor:
    return audit.Actor(f"admin {account.email}", "admin console", account.id, request.remote_addr)


def admin_required(view):
    """The view runs with g.admin (the signed-in admin, also g.account for the templates) and the
    admin as the audit actor; without an admin session (a customer's does not count) the browser
    is sent to /admin/login. Each request moves the session's idle expiry on."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        db_session = read_session()
        row = current_session(db_session, admin=True)
        account = current_account(db_session, admin=True) if row is not None else None
        if account is None:
            path = request.full_path.rstrip("?")
            return redirect(f"/admin/login?next={quote(path if path.startswith('/admin') else '/admin/', safe='')}",
                            code=303)
        minutes = context.settings().admin_session_minutes
        with write_scope() as writing:
            writing.get(ConsoleSession, row.id).expires_at = utcnow() + timedelta(minutes=minutes)
        g.admin = g.account = account
        audit.set_actor(admin_actor(account))
        return view(*args, **kwargs)

    return wrapper


def safe_next(target: str | None) -> str:
    """A `next` parameter only when it is an admin path of this site."""
    if target and target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return "/admin/"
