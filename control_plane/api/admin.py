"""/api/admin/v1: the admin JSON API, for an admin API key (sk-tg-admin-…; accounts/admin_keys.py).
A customer key, or an admin account's customer key, gets 401 admin_key_required; a read-only
admin key may only GET (403 admin_key_read_only otherwise). Changes made here are audited as the
key's (`admin key <id> (<email>)`).

The endpoints of each domain are in the module named for it (api/admin_*.py); this module has
the blueprint, the authentication and what every domain shares.
"""
from __future__ import annotations

from flask import Blueprint, g, request
from sqlalchemy import select

from .. import audit
from ..accounts import admin_keys
from ..billing import reconcile
from ..billing.usage_drain import quarantine_item
from ..models import Account, UsageQuarantine
from . import context
from .errors import ApiError

admin_v1 = Blueprint("admin_v1", __name__, url_prefix="/admin/v1")

READING = {"GET", "HEAD", "OPTIONS"}


@admin_v1.before_request
def _authenticate() -> None:
    presented = context.presented_key()
    if not presented:
        raise ApiError("missing_api_key")
    key = admin_keys.find(context.session(), presented)
    if key is None:
        raise ApiError("admin_key_required")
    if key.read_only and request.method not in READING:
        raise ApiError("admin_key_read_only")
    owner = context.session().get(Account, key.account_id)
    g.admin_key, g.admin = key, owner
    audit.set_actor(audit.Actor(f"admin key {key.id} ({owner.email})", "admin api", owner.id, request.remote_addr))


@admin_v1.get("/reconcile")
def reconcile_report():
    """Drift between Redis and the SQL ledger, broken invariants, quarantined records and overage."""
    return reconcile.reconcile(context.session(), context.settings()).as_dict()


@admin_v1.get("/quarantine")
def quarantine():
    """Usage records the worker could not record, newest first."""
    rows, has_more, next_before = context.page(select(UsageQuarantine), UsageQuarantine.id)
    return {"data": [quarantine_item(row) for row, _cursor in rows], "has_more": has_more,
            "next_before": next_before}


# Each domain's endpoints attach to admin_v1 when imported.
from . import admin_accounts, admin_catalog, admin_ops, admin_prices  # noqa: F401
