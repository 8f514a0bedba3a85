"""/api/v1: what a customer's API key may read about its own account."""
from __future__ import annotations

from flask import Blueprint, g, request

from ..accounts.balances import balance_document, current_balance_nano
from ..billing import usage_log, wallet_history
from ..models import Account, utc_timestamp
from ..money import nano_to_decimal
from ..usage_classes import USAGE_CLASSES
from . import context
from .errors import bad_parameter

v1 = Blueprint("v1", __name__, url_prefix="/v1")
v1.before_request(context.authenticate)


@v1.get("/balance")
def balance():
    account: Account = g.account
    return balance_document(current_balance_nano(context.settings(), account))


@v1.get("/transactions")
def transactions():
    """The account's ledger rows, newest first (as the console's Transactions page)."""
    rows, has_more, next_before = context.page(wallet_history.wallet_entries(g.account.id), wallet_history.CURSOR)
    items = [
        {
            "id": transaction.id,
            "type": transaction.kind,
            "amount": nano_to_decimal(amount),
            "amount_nano": amount,
            "description": transaction.description,
            "created_at": utc_timestamp(transaction.created_at),
        }
        for transaction, amount, _cursor in rows
    ]
    return {"transactions": items, "has_more": has_more, "next_before": next_before}


@v1.get("/usage")
def usage():
    """The account's usage rows newest first, filtered as the console's Logs page filters them
    (billing/usage_log.py): key_id, model, status (ok, error or an HTTP status), from and to (UTC
    dates, included), request_id."""
    try:
        filters = usage_log.parse(request.args)
    except usage_log.FilterError as exc:
        raise bad_parameter(exc.name, exc.requirement) from None
    # The cursor merged into the query's own id bounds (usage_log.UsageQuery); page() repeats it.
    query = usage_log.UsageQuery(context.session(), g.account.id, filters).rows(before=context.before_arg())
    rows, has_more, next_before = context.page(query, usage_log.USAGE.c.id)
    items = [_usage_item(row, g.account.is_admin) for row in rows]
    return {"data": items, "has_more": has_more, "next_before": next_before}


def _usage_item(row, admin: bool) -> dict:
    """A usage row; what it cost the operator (its overage, the loss not charged; the provider's
    cost and its version, the margin's other half) only for admin accounts."""
    item = {
        "created_at": utc_timestamp(row.created_at),
        "request_id": row.request_id,
        "key_id": row.key_id,
        "model": row.model,
        "requested_model": row.requested_model,
        "upstream_model": row.upstream_model,
        "provider": row.provider,
        "endpoint": row.endpoint,
        "stream": row.stream,
        "status": row.status,
        "error_code": row.error_code,
        "error_message": row.error_message,
        "billing_basis": row.billing_basis,
        "tokens": {usage.price: getattr(row, usage.column) for usage in USAGE_CLASSES},
        "cost": nano_to_decimal(row.cost_nano),
        "cost_nano": row.cost_nano,
        "hold_nano": row.hold_nano,
        "price_version": row.price_version_id,
        "latency_ms": row.latency_ms,
        "ttfb_ms": row.ttfb_ms,
        "attempts": row.attempts,
        "failed_statuses": [int(status) for status in row.failed_statuses.split(",") if status],
    }
    if admin:
        item.update(overage_nano=row.overage_nano, provider_cost_nano=row.provider_cost_nano,
                    cost_version_id=row.cost_version_id)
    return item
