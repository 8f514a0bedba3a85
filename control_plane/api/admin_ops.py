"""/api/admin/v1: the overview, deposits and their rescans, the audit log and reconcile runs — the
admin console's Overview, Deposits and Audit log pages as JSON, read through the same modules
(admin/overview.py, admin/deposits.py, admin/audit_log.py)."""
from __future__ import annotations

import logging

import redis
from flask import request
from sqlalchemy import select

from .. import db, logs
from ..admin import audit_log, deposits, overview
from ..billing import reconcile_runs
from ..billing.usage_log import FilterError
from ..models import AuditEntry, Deposit, ReconcileRun
from . import context
from .admin import admin_v1
from .errors import ApiError, bad_parameter

log = logging.getLogger(__name__)


def _unavailable(exc: redis.RedisError) -> ApiError:
    log.warning("admin API %s: Redis did not answer: %s", request.path, logs.error_summary(exc))
    return ApiError("control_plane_unavailable", request_id=request.headers.get("X-Request-Id"))


@admin_v1.get("/overview")
def overview_figures():
    """The last 30 UTC days per day, model, provider and status, the top accounts, the drain
    backlog (its `unknown` says why when Redis did not answer) and the newest reconcile run."""
    return overview.figures(context.session(), context.settings()).as_dict()


@admin_v1.get("/deposits")
def deposit_list():
    """Every deposit, newest first (?chain=, ?state= pending|credited|below_minimum|orphaned)."""
    filters = _filters(deposits.parse_filters)
    cursors = deposits.chain_cursors(context.session())
    rows, has_more, next_before = context.page(deposits.deposits_query(filters), Deposit.id)
    return {"data": [deposits.deposit_item(deposit, email, cursors) for deposit, email, _cursor in rows],
            "has_more": has_more, "next_before": next_before,
            "rescans": [found.as_dict() for found in deposits.rescans(context.session(), cursors).values()]}


@admin_v1.post("/deposits/rescan")
def deposit_rescan():
    """{"chain": "polygon", "from_block": 123}: move the chain's cursor back so its watcher scans
    from that block again (audited)."""
    body = context.json_object('{"chain": "polygon", "from_block": 123}')
    chain, from_block = body.get("chain"), body.get("from_block")
    if not isinstance(chain, str):
        raise bad_parameter("chain", "a chain name, one of tron, bsc, polygon")
    if type(from_block) is not int:
        raise bad_parameter("from_block", "a block number (an integer)")
    try:
        with db.session_scope(context.settings()) as session:
            before, after = deposits.rescan(session, chain.strip().lower(), from_block)
    except deposits.RescanRefused as exc:
        raise ApiError("invalid_request", detail=str(exc)) from None
    return {"chain": chain.strip().lower(), "next_block_before": before, "next_block": after}


@admin_v1.get("/audit")
def audit_entries():
    """The audit log, newest first (?actor=, ?entity=, ?entity_id=, ?action=, ?from=, ?to=,
    ?since=)."""
    filters = _filters(audit_log.parse_filters)
    rows, has_more, next_before = context.page(audit_log.entries_query(filters), AuditEntry.id)
    return {"data": [audit_log.entry_item(entry) for entry, _cursor in rows], "has_more": has_more,
            "next_before": next_before}


@admin_v1.get("/reconcile/runs")
def reconcile_run_list():
    """The stored reconcile runs, newest first."""
    rows, has_more, next_before = context.page(select(ReconcileRun), ReconcileRun.id)
    return {"data": [reconcile_runs.run_item(row) for row, _cursor in rows], "has_more": has_more,
            "next_before": next_before}


@admin_v1.post("/reconcile/runs")
def reconcile_run():
    """Reconcile now and store the run (as this key's): the run and the whole report."""
    try:
        run, report = reconcile_runs.run(context.settings())
    except redis.RedisError as exc:
        raise _unavailable(exc) from None
    return {**reconcile_runs.run_item(run), "report": report.as_dict()}, 201


def _filters(parse):
    try:
        return parse(request.args)
    except FilterError as exc:
        raise bad_parameter(exc.name, exc.requirement) from None
