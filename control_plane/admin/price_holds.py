"""Price changes a sync held for approval (/admin/prices/held): approve or reject.

A sync (`tollgate prices sync --apply`, or `tollgate up`'s periodic one) holds a route's change
that raises a price by more than the limit, makes one $0 or removes one (catalog/price_sync.py).
Approving applies it as the route's new cost version, whose source says who approved it;
rejecting leaves the route's cost as it is. A change whose route's cost moved since it was held
can only be rejected.
"""
from __future__ import annotations

from flask import flash, g, redirect, render_template

from ..api import context
from ..catalog import price_sync
from ..errors import ServiceError
from ..money import format_usd
from . import admin, error_page
from .sessions import admin_required, read_session, write_scope

HELD = "/admin/prices/held"
RECENTLY_DECIDED = 20


def _usd(stored: int | None, charged: int, price_field: str) -> str:
    """'$3.00', '$3.00 (as input)' for a class without its own price."""
    if stored is None:
        return f"{format_usd(charged)} (as {price_sync.FALLBACK[price_field].replace('_', ' ')})"
    return format_usd(stored)


def _row(view: price_sync.HoldView) -> dict:
    """What the page shows of a held change: its route and every class now and proposed."""
    hold, route = view.hold, view.route
    return {
        "hold": hold,
        "route": f"{route.model.name} via {route.provider.name}/{route.upstream_model}" if route else "a removed route",
        "stale": view.stale,
        # Every class as charged (one without its own price follows its fallback); `own`: its own
        # price changes (what the decided list names).
        "classes": [{"name": change.field.replace("_", " "),
                     "current": _usd(change.current, change.current_charged, change.field),
                     "proposed": _usd(change.proposed, change.proposed_charged, change.field),
                     "change": change.percent_text() if change.current_charged != change.proposed_charged else "—",
                     "own": change.current != change.proposed}
                    for change in view.classes],
    }


@admin.get("/prices/held")
@admin_required
def price_holds():
    session = read_session()
    pending = [_row(price_sync.hold_view(session, hold)) for hold in price_sync.holds(session, pending=True)]
    decided = [_row(price_sync.hold_view(session, hold))
               for hold in price_sync.holds(session, pending=False, limit=RECENTLY_DECIDED)]
    return render_template("admin/price_holds.html", nav="models", admin=g.admin, pending=pending, decided=decided)


@admin.post("/prices/held/<int:hold_id>/approve")
@admin_required
def price_hold_approve(hold_id: int):
    try:
        with write_scope() as db_session:
            hold, version = price_sync.approve(db_session, hold_id, g.admin.email)
            model_id = version.model_id
    except price_sync.HoldNotFound:
        return _not_found(hold_id)
    except ServiceError as exc:
        flash(f"Not applied: {exc}.", "error")
        return redirect(HELD, code=303)
    error = price_sync.publish_models(context.settings(), [model_id])
    if error:
        flash(f"Approved: route {hold.route_id} costs cost version {version.id}, but the gateway has not taken it "
              f"yet (Redis: {error}); run `tollgate publish`.", "error")
    else:
        flash(f"Approved: route {hold.route_id} now costs cost version {version.id}.", "success")
    return redirect(HELD, code=303)


@admin.post("/prices/held/<int:hold_id>/reject")
@admin_required
def price_hold_reject(hold_id: int):
    try:
        with write_scope() as db_session:
            hold = price_sync.reject(db_session, hold_id)
    except price_sync.HoldNotFound:
        return _not_found(hold_id)
    except ServiceError as exc:
        flash(f"Not rejected: {exc}.", "error")
        return redirect(HELD, code=303)
    flash(f"Rejected: route {hold.route_id}'s cost stays as it is.", "success")
    return redirect(HELD, code=303)


def _not_found(hold_id: int):
    return error_page(404, "No such price change", f"There is no held price change {hold_id}.")
