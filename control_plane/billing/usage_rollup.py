"""The gateway's usage per UTC day, model, provider and status (the usage_rollup table), added to
in the same SQL transaction as the usage rows it counts (the drain calls `add` beside
daily_usage.add), so the admin overview reads at most days × models × providers × statuses rows,
never the usage table, and its totals always equal a GROUP BY of the usage rows."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import db
from ..models import UsageRollup
from ..money import money_fields
from ..usage_classes import USAGE_CLASSES

TOKEN_COLUMNS = tuple(usage.column for usage in USAGE_CLASSES)
# The columns a usage row adds its own values to (requests counts the rows).
SUMMED = (*TOKEN_COLUMNS, "cost_nano", "provider_cost_nano")
GROUPED = ("day", "model", "provider", "status")


def add(session: Session, rows: list[dict]) -> None:
    """Count usage rows just inserted: each a dict of its column values (created_at, model,
    provider, status, the token columns, cost_nano, provider_cost_nano)."""
    groups: dict[tuple, dict] = defaultdict(lambda: dict.fromkeys(("requests", *SUMMED), 0))
    for row in rows:
        totals = groups[(row["created_at"].date(), row["model"], row["provider"], row["status"])]
        totals["requests"] += 1
        for column in SUMMED:
            totals[column] += row[column]
    if not groups:
        return
    # Sorted, so concurrent drains take the rows' locks in one order.
    values = [dict(zip(GROUPED, key), **totals) for key, totals in sorted(groups.items())]
    statement = db.upsert(session, UsageRollup)
    table = UsageRollup.__table__.c
    session.execute(statement.on_conflict_do_update(
        index_elements=[table[name] for name in GROUPED],
        set_={name: table[name] + statement.excluded[name] for name in ("requests", *SUMMED)},
    ), values)


@dataclass
class Totals:
    """Requests, tokens per class (by the class's price name: input, cached_input, …) and money
    of some rollup rows."""

    requests: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: {usage.price: 0 for usage in USAGE_CLASSES})
    cost_nano: int = 0
    provider_cost_nano: int = 0

    @property
    def margin_nano(self) -> int:
        """What the operator keeps: charged minus what the providers charge."""
        return self.cost_nano - self.provider_cost_nano

    def add(self, row) -> None:
        self.requests += row.requests
        for usage in USAGE_CLASSES:
            self.tokens[usage.price] += getattr(row, usage.column)
        self.cost_nano += row.cost_nano
        self.provider_cost_nano += row.provider_cost_nano

    def as_dict(self) -> dict:
        """As the admin API shows it: money as exact decimal USD and as nano-USD."""
        return {"requests": self.requests, "tokens": dict(self.tokens),
                **money_fields(charged=self.cost_nano, provider_cost=self.provider_cost_nano,
                               margin=self.margin_nano)}


def rows_between(session: Session, first: date, last: date) -> list:
    """The rollup rows of the UTC days first..last (both included)."""
    table = UsageRollup.__table__
    return session.execute(select(table).where(table.c.day >= first, table.c.day <= last)).all()


def totals_by(rows, *keys: str) -> dict[tuple, Totals]:
    """The rows' totals per value of the key columns (none: one grand total under ())."""
    found: dict[tuple, Totals] = defaultdict(Totals)
    for row in rows:
        found[tuple(getattr(row, key) for key in keys)].add(row)
    return dict(found)
