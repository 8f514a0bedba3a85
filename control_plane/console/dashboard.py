"""The dashboard /console/: balance, spend, requests, daily spend by model, the last requests.

Every total comes from usage_daily (billing/daily_usage.py), a row per account, UTC day and model
kept in the same SQL transaction as the usage rows, so a view reads at most 30 days × models rows
and never scans the usage table, and the chart's totals equal the ledger's usage entries.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from flask import g, render_template
from sqlalchemy import select

from ..accounts.balances import current_balance_nano
from ..api import context
from ..billing import usage_log
from ..models import UsageDaily, utcnow
from ..usage_classes import USAGE_CLASSES
from . import console
from .request_log import account_keys
from .sessions import login_required, read_session

CHART_DAYS = 30
PERIODS = (("Today", 1), ("Last 7 days", 7), ("Last 30 days", 30))  # UTC days, today included
LAST_REQUESTS = 10


@dataclass(frozen=True)
class Period:
    label: str
    cost_nano: int
    requests: int
    errors: int


def _periods(daily, today: date) -> list[Period]:
    periods = []
    for label, days in PERIODS:
        rows = [row for row in daily if row.day > today - timedelta(days=days)]
        periods.append(Period(label, sum(r.cost_nano for r in rows), sum(r.requests for r in rows),
                              sum(r.errors for r in rows)))
    return periods


def _chart(daily, first: date) -> dict:
    """The chart's data, embedded in the page as JSON: a cost_nano series per model over the
    CHART_DAYS days (exact integers; dashboard.js draws them as USD)."""
    days = [first + timedelta(days=n) for n in range(CHART_DAYS)]
    series: dict[str, list[int]] = defaultdict(lambda: [0] * CHART_DAYS)
    for row in daily:
        if row.model:  # "": requests naming no model, refused at no cost
            series[row.model][(row.day - first).days] += row.cost_nano
    models = sorted(series, key=lambda model: (-sum(series[model]), model))
    return {"days": [day.isoformat() for day in days], "time_zone": "UTC",
            "series": [{"model": model, "cost_nano": series[model]} for model in models],
            "total_nano": sum(sum(costs) for costs in series.values())}


@console.get("/")
@login_required
def dashboard():
    session = read_session()
    today = utcnow().date()
    first = today - timedelta(days=CHART_DAYS - 1)
    daily = session.execute(
        select(UsageDaily.day, UsageDaily.model, UsageDaily.requests, UsageDaily.errors, UsageDaily.cost_nano)
        .where(UsageDaily.account_id == g.account.id, UsageDaily.day >= first, UsageDaily.day <= today)
    ).all()
    chart = _chart(daily, first)
    last = session.execute(usage_log.newest_first(
        usage_log.UsageQuery(session, g.account.id, usage_log.UsageFilters()).rows(), LAST_REQUESTS)).all()
    return render_template(
        "console/dashboard.html", nav="dashboard", balance_nano=current_balance_nano(context.settings(), g.account),
        periods=_periods(daily, today), chart=chart, chart_rows=_chart_rows(chart), last=last,
        keys=account_keys(session, g.account.id), usage_classes=USAGE_CLASSES)


def _chart_rows(chart: dict) -> list[tuple[str, list[int], int]]:
    """The chart's figures as table rows, for readers without JavaScript: (day, cost per model,
    day's total), only the days with usage, newest first."""
    rows = []
    for index, day in enumerate(chart["days"]):
        costs = [series["cost_nano"][index] for series in chart["series"]]
        if any(costs):
            rows.append((day, costs, sum(costs)))
    return rows[::-1]
