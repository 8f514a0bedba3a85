"""Each account's usage per model and UTC day (the usage_daily table), added to in the same SQL
transaction as the usage rows it counts, so its totals always equal theirs (and the ledger's)."""
from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func
from sqlalchemy.orm import Session

from .. import db
from ..models import UsageDaily


def add(session: Session, rows: list[dict]) -> None:
    """Count usage rows just inserted: each a dict of its id, account_id, model, status,
    cost_nano and created_at."""
    days: dict[tuple, dict] = defaultdict(lambda: {"requests": 0, "errors": 0, "cost_nano": 0})
    for row in rows:
        totals = days[(row["account_id"], row["created_at"].date(), row["model"])]
        totals["requests"] += 1
        totals["errors"] += row["status"] >= 400
        totals["cost_nano"] += row["cost_nano"]
        totals["first_usage_id"] = min(totals.get("first_usage_id", row["id"]), row["id"])
        totals["last_usage_id"] = max(totals.get("last_usage_id", row["id"]), row["id"])
    if not days:
        return
    values = [{"account_id": account_id, "day": day, "model": model, **totals}
              for (account_id, day, model), totals in sorted(days.items())]
    postgres = session.get_bind().dialect.name == "postgresql"
    least, greatest = (func.least, func.greatest) if postgres else (func.min, func.max)
    statement = db.upsert(session, UsageDaily)
    table = UsageDaily.__table__.c
    session.execute(statement.on_conflict_do_update(
        index_elements=[table.account_id, table.day, table.model],
        set_={
            "requests": table.requests + statement.excluded.requests,
            "errors": table.errors + statement.excluded.errors,
            "cost_nano": table.cost_nano + statement.excluded.cost_nano,
            "first_usage_id": least(table.first_usage_id, statement.excluded.first_usage_id),
            "last_usage_id": greatest(table.last_usage_id, statement.excluded.last_usage_id),
        },
    ), values)
