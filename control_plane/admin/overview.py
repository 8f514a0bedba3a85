"""The Overview page (/admin/): the last 30 UTC days of traffic and money — per day, model and
provider, error rates by status, the top accounts — the drain backlog and reconcile drift.

The figures come from rollups kept in the drain's SQL transaction: usage_rollup (per day, model,
provider and status; billing/usage_rollup.py) and usage_daily (per account), so a view reads at
most 30 days of them and never the usage table. The backlog is what the Redis usage streams hold
that SQL does not have yet (as reconcile counts undrained records); the drift is the newest stored
reconcile run (billing/reconcile_runs.py), and the page's button makes a new one. `figures` is
also the admin API's GET /overview.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import redis
from flask import flash, redirect, render_template
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import logs
from ..api import context
from ..billing import reconcile_runs, usage_rollup
from ..billing.usage_rollup import Totals
from ..db import total
from ..hot import connection, redis_keys, usage_records
from ..models import Account, ReconcileRun, Usage, UsageDaily, UsageQuarantine, utc_timestamp, utcnow
from ..money import money_fields
from ..settings import Settings
from ..usage_classes import USAGE_CLASSES
from . import admin
from .sessions import admin_required, read_session

DAYS = 30  # UTC days, today included
TOP_ACCOUNTS = 10
STREAM_PAGE = 1000  # stream entries read at a time for the backlog


@dataclass(frozen=True)
class TopAccount:
    account_id: int
    email: str
    requests: int
    cost_nano: int

    def as_dict(self) -> dict:
        return {"account_id": self.account_id, "email": self.email, "requests": self.requests,
                **money_fields(charged=self.cost_nano)}


@dataclass(frozen=True)
class Backlog:
    """Usage records in the Redis streams that SQL does not have yet: the drain's work to do."""

    records: int
    cost_nano: int  # Redis debited it already; the ledger has it once drained
    oldest_at: datetime | None  # when the oldest of them reached its stream
    unknown: str = ""  # why it could not be read (Redis did not answer); the figures are 0 then

    def as_dict(self) -> dict:
        return {"records": self.records, **money_fields(cost=self.cost_nano),
                "oldest_at": utc_timestamp(self.oldest_at) if self.oldest_at else None,
                "unknown": self.unknown or None}


@dataclass(frozen=True)
class Overview:
    first: date
    last: date
    days: list[tuple[date, Totals]]  # every day of the period, oldest first
    models: list[tuple[str, Totals]]  # most charged first
    providers: list[tuple[str, Totals]]
    statuses: list[tuple[int, int]]  # (status, requests), by status
    total: Totals
    top_accounts: list[TopAccount]
    backlog: Backlog
    quarantined: int  # usage records the drain could not record
    reconcile: ReconcileRun | None  # the newest run

    @property
    def errors(self) -> int:
        return sum(requests for status, requests in self.statuses if status >= 400)

    def as_dict(self) -> dict:
        return {
            "from": self.first.isoformat(), "to": self.last.isoformat(), "time_zone": "UTC",
            "total": {**self.total.as_dict(), "errors": self.errors,
                      "error_rate": percent(self.errors, self.total.requests)},
            "days": [{"day": day.isoformat(), **totals.as_dict()} for day, totals in self.days],
            "models": [{"model": model, **totals.as_dict()} for model, totals in self.models],
            "providers": [{"provider": provider, **totals.as_dict()} for provider, totals in self.providers],
            "statuses": [{"status": status, "requests": requests, "share": percent(requests, self.total.requests)}
                         for status, requests in self.statuses],
            "top_accounts": [row.as_dict() for row in self.top_accounts],
            "drain_backlog": self.backlog.as_dict(), "quarantined_records": self.quarantined,
            "reconcile": reconcile_runs.run_item(self.reconcile) if self.reconcile else None,
        }


def percent(part: int, whole: int) -> Decimal:
    """part / whole as a percentage with two decimals (0 of nothing is 0), exactly rounded."""
    if not whole:
        return Decimal("0.00")
    return (Decimal(part * 100) / Decimal(whole)).quantize(Decimal("0.01"))


def figures(session: Session, settings: Settings, today: date | None = None) -> Overview:
    """The overview of the DAYS UTC days up to today (included)."""
    last = today or utcnow().date()
    first = last - timedelta(days=DAYS - 1)
    rows = usage_rollup.rows_between(session, first, last)
    by_day = usage_rollup.totals_by(rows, "day")
    return Overview(
        first, last,
        days=[(day, by_day.get((day,), Totals())) for day in (first + timedelta(days=n) for n in range(DAYS))],
        models=_ranked(usage_rollup.totals_by(rows, "model")),
        providers=_ranked(usage_rollup.totals_by(rows, "provider")),
        statuses=sorted((status, totals.requests) for (status,), totals in usage_rollup.totals_by(rows, "status").items()),
        total=usage_rollup.totals_by(rows).get((), Totals()),
        top_accounts=_top_accounts(session, first, last),
        backlog=backlog(session, settings),
        quarantined=session.scalar(select(func.count()).select_from(UsageQuarantine)),
        reconcile=reconcile_runs.latest(session),
    )


def _ranked(totals: dict[tuple, Totals]) -> list[tuple[str, Totals]]:
    return sorted(((name, row) for (name,), row in totals.items()), key=lambda item: (-item[1].cost_nano, item[0]))


def _top_accounts(session: Session, first: date, last: date) -> list[TopAccount]:
    charged = total(UsageDaily.cost_nano)
    rows = session.execute(
        select(UsageDaily.account_id, Account.email, total(UsageDaily.requests), charged)
        .join(Account, Account.id == UsageDaily.account_id)
        .where(UsageDaily.day >= first, UsageDaily.day <= last)
        .group_by(UsageDaily.account_id, Account.email)
        .order_by(charged.desc(), UsageDaily.account_id)
        .limit(TOP_ACCOUNTS)
    ).all()
    return [TopAccount(*row) for row in rows]


def backlog(session: Session, settings: Settings) -> Backlog:
    """The records of every usage stream, read a page at a time, less those SQL already has (the
    drain commits before it deletes the entries). Without Redis the overview still shows SQL's
    figures: the backlog is unknown then, and says why."""
    try:
        return _backlog(session, settings)
    except redis.RedisError as exc:
        return Backlog(0, 0, None, f"Redis did not answer: {logs.error_summary(exc)}")


def _backlog(session: Session, settings: Settings) -> Backlog:
    client = connection.client(settings)
    records, cost, oldest = 0, 0, None
    for shard in range(settings.redis_shards):
        start = "-"
        while page := client.xrange(redis_keys.usage_stream(shard), min=start, count=STREAM_PAGE):
            found = [(entry_id, record) for entry_id, fields in page for record in usage_records.valid_records(fields)]
            drained = set(session.scalars(select(Usage.request_id).where(
                Usage.request_id.in_({record.request_id for _entry_id, record in found}))))
            for entry_id, record in found:
                if record.request_id in drained:
                    continue
                records, cost = records + 1, cost + record.cost_nano
                appended = _entry_time(entry_id)
                oldest = appended if oldest is None else min(oldest, appended)
            if len(page) < STREAM_PAGE:
                break
            start = "(" + page[-1][0]
    return Backlog(records, cost, oldest)


def _entry_time(entry_id: str) -> datetime:
    """When a stream entry was appended: its id's milliseconds."""
    ms = int(entry_id.split("-")[0])
    return datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)


def _chart(overview: Overview) -> dict:
    """The chart's data, embedded in the page as JSON: charged and provider cost per day (exact
    integers; admin_overview.js draws them as USD)."""
    return {"days": [day.isoformat() for day, _totals in overview.days], "time_zone": "UTC",
            "charged_nano": [totals.cost_nano for _day, totals in overview.days],
            "provider_cost_nano": [totals.provider_cost_nano for _day, totals in overview.days]}


@admin.get("/")
@admin_required
def overview():
    found = figures(read_session(), context.settings())
    return render_template("admin/overview.html", nav="overview", overview=found, chart=_chart(found),
                           usage_classes=USAGE_CLASSES, percent=percent)


@admin.post("/reconcile")
@admin_required
def reconcile_now():
    """Run reconciliation and store the run; the overview shows it."""
    try:
        run, _report = reconcile_runs.run(context.settings())
    except redis.RedisError as exc:
        flash(f"Reconcile did not run: Redis did not answer ({logs.error_summary(exc)}).", "error")
    else:
        flash(f"Reconcile run {run.id}: " + ("everything agrees." if run.ok else _what_failed(run)),
              "success" if run.ok else "error")
    return redirect("/admin/#reconcile", code=303)


def _what_failed(run: ReconcileRun) -> str:
    parts = [f"{count} {label}" for count, label in (
        (run.drifting, "accounts drifting"), (run.keys_drifting, "keys drifting"),
        (run.violations, "broken invariants"), (run.quarantined, "quarantined records")) if count]
    return ", ".join(parts) + "."
