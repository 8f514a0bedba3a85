"""Reconciliation runs kept in SQL (reconcile_runs): who ran billing/reconcile.py when, and its
figures, so the admin overview shows the last run's drift whoever ran it — the console's "Run
reconcile now" button, the admin API's POST /reconcile/runs or the CLI."""
from __future__ import annotations

import json
import time
from contextlib import closing

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit, db
from ..models import ReconcileRun, utc_timestamp, utcnow
from ..money import nano_to_decimal
from ..settings import Settings
from . import reconcile

# How many of each kind of finding a run keeps (its counts are complete): a Redis that lost its
# state makes every account drift, and the row stays small.
FINDINGS_KEPT = 100


def run(settings: Settings) -> tuple[ReconcileRun, reconcile.Report]:
    """Reconcile now (in a read-only session of its own, as reconcile needs) and store the run,
    as the current audit actor's."""
    started, clock = utcnow(), time.monotonic()
    with closing(db.read_session(settings)) as session:
        report = reconcile.reconcile(session, settings)
    with db.session_scope(settings) as session:
        row = _row(report, started, int((time.monotonic() - clock) * 1000), audit.current().name)
        session.add(row)
    return row, report


def _row(report: reconcile.Report, started, duration_ms: int, actor: str) -> ReconcileRun:
    """The run's row for a report."""
    drifts = [row.drift_nano for row in report.drifting if row.drift_nano is not None]
    findings = {"drifting": [row.as_dict() for row in report.drifting[:FINDINGS_KEPT]],
                "keys_drifting": [row.as_dict() for row in report.keys[:FINDINGS_KEPT]],
                "violations": [violation.as_dict() for violation in report.violations[:FINDINGS_KEPT]]}
    return ReconcileRun(
        started_at=started, duration_ms=duration_ms, actor=actor, ok=report.ok, accounts=len(report.accounts),
        drifting=len(report.drifting), keys_drifting=len(report.keys), violations=len(report.violations),
        quarantined=len(report.quarantined), undrained=sum(row.undrained for row in report.accounts),
        drift_nano=sum(abs(drift) for drift in drifts), overage_nano=report.overage_nano,
        findings=json.dumps(findings, sort_keys=True))


def latest(session: Session) -> ReconcileRun | None:
    return session.scalars(select(ReconcileRun).order_by(ReconcileRun.id.desc()).limit(1)).first()


def run_item(row: ReconcileRun) -> dict:
    """A run as the admin API shows it."""
    return {"id": row.id, "started_at": utc_timestamp(row.started_at), "duration_ms": row.duration_ms,
            "actor": row.actor, "ok": row.ok, "accounts": row.accounts, "drifting": row.drifting,
            "keys_drifting": row.keys_drifting, "violations": row.violations, "quarantined": row.quarantined,
            "undrained_records": row.undrained, "drift": nano_to_decimal(row.drift_nano),
            "drift_nano": row.drift_nano, "overage": nano_to_decimal(row.overage_nano),
            "overage_nano": row.overage_nano, "findings": json.loads(row.findings)}
