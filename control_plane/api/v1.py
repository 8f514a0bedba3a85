"""/api/v1: what a customer's API key may read about its own account."""
from __future__ import annotations

from flask import Blueprint, current_app, g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import db, keys
from ..balances import balance_document, current_balance_nano
from ..models import Account, LedgerAccount, LedgerEntry, LedgerTransaction, Usage, UsageQuarantine
from ..models import utc_timestamp as _timestamp  # by this name deposits/api.py imports it too
from ..money import nano_to_decimal
from ..usage_drain import quarantine_item
from .errors import bad_parameter, forbidden, invalid_key, missing_key

DEFAULT_PAGE = 20
MAX_PAGE = 100
MAX_ID = 2**63 - 1

v1 = Blueprint("v1", __name__, url_prefix="/v1")


def _settings():
    return current_app.config["TOLLGATE_SETTINGS"]


def _session() -> Session:
    """The request's read-only session (closed at teardown; the API never writes)."""
    if "db_session" not in g:
        g.db_session = db.read_session(_settings())
    return g.db_session


@v1.before_request
def authenticate() -> None:
    """`Authorization: Bearer <key>` or `x-api-key: <key>`; sets g.account."""
    presented = _presented_key()
    if not presented:
        raise missing_key()
    key = keys.find_key(_session(), presented)
    if key is None or key.status != "active" or key.account.status != "active":
        raise invalid_key()
    g.account = key.account


def _presented_key() -> str:
    """The key of `Authorization: Bearer <key>`, else of `x-api-key` (as the hot path takes it),
    surrounding whitespace ignored; "" if neither has one."""
    parts = request.headers.get("Authorization", "").split(None, 1)
    if len(parts) == 2 and parts[0].lower() == "bearer" and parts[1].strip():
        return parts[1].strip()
    return request.headers.get("x-api-key", "").strip()


def _require_admin() -> None:
    if not g.account.is_admin:
        raise forbidden()


@v1.get("/balance")
def balance():
    account: Account = g.account
    return balance_document(current_balance_nano(_settings(), account))


@v1.get("/transactions")
def transactions():
    wallet = select(LedgerAccount.id).where(LedgerAccount.account_id == g.account.id).scalar_subquery()
    statement = (
        select(LedgerTransaction, LedgerEntry.amount)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerEntry.ledger_account_id == wallet)
    )
    rows, has_more, next_before = _page(statement, LedgerEntry.transaction_id)
    items = [
        {
            "id": transaction.id,
            "type": transaction.kind,
            "amount": nano_to_decimal(amount),
            "amount_nano": amount,
            "description": transaction.description,
            "created_at": _timestamp(transaction.created_at),
        }
        for transaction, amount, _cursor in rows
    ]
    return {"transactions": items, "has_more": has_more, "next_before": next_before}


@v1.get("/admin/reconcile")
def admin_reconcile():
    """Drift between Redis and the SQL ledger, broken invariants, quarantined records and overage
    (admin keys only)."""
    from .. import reconcile

    _require_admin()
    return reconcile.reconcile(_session(), _settings()).as_dict()


@v1.get("/admin/quarantine")
def admin_quarantine():
    """Usage records the worker could not record, newest first (admin keys only)."""
    _require_admin()
    rows, has_more, next_before = _page(select(UsageQuarantine), UsageQuarantine.id)
    return {"data": [quarantine_item(row) for row, _cursor in rows], "has_more": has_more,
            "next_before": next_before}


@v1.get("/usage")
def usage():
    rows, has_more, next_before = _page(select(Usage).where(Usage.account_id == g.account.id), Usage.id)
    items = [_usage_item(row, g.account.is_admin) for row, _cursor in rows]
    return {"data": items, "has_more": has_more, "next_before": next_before}


def _usage_item(row: Usage, with_overage: bool) -> dict:
    """A usage row; its overage (the operator's loss, not charged) only for admin accounts."""
    item = {
        "created_at": _timestamp(row.created_at),
        "request_id": row.request_id,
        "key_id": row.key_id,
        "model": row.model,
        "upstream_model": row.upstream_model,
        "provider": row.provider,
        "endpoint": row.endpoint,
        "stream": row.stream,
        "status": row.status,
        "billing_basis": row.billing_basis,
        "tokens": {
            "input": row.input_tokens,
            "cached_input": row.cached_input_tokens,
            "cache_write": row.cache_write_tokens,
            "cache_write_1h": row.cache_write_1h_tokens,
            "output": row.output_tokens,
            "reasoning": row.reasoning_tokens,
        },
        "cost": nano_to_decimal(row.cost_nano),
        "cost_nano": row.cost_nano,
        "hold_nano": row.hold_nano,
        "price_version": row.price_version_id,
        "latency_ms": row.latency_ms,
        "ttfb_ms": row.ttfb_ms,
    }
    if with_overage:
        item["overage_nano"] = row.overage_nano
    return item


def _page(statement, cursor_column):
    """Newest first by cursor_column, `limit` rows (?limit=, ?before= the previous page's
    next_before). Each row ends with its cursor value; next_before is None on the last page."""
    limit = _int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    before = _int_arg("before", None, 1, MAX_ID)
    statement = statement.add_columns(cursor_column)
    if before is not None:
        statement = statement.where(cursor_column < before)
    rows = _session().execute(statement.order_by(cursor_column.desc()).limit(limit + 1)).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    return rows, has_more, rows[-1][-1] if has_more else None


def _int_arg(name: str, default: int | None, minimum: int, maximum: int) -> int | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= maximum:
        raise bad_parameter(name, f"an integer from {minimum} to {maximum}")
    return int(raw)
