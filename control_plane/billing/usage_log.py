"""An account's request log, filtered: the one query behind the console's Logs page, its CSV and
/api/v1/usage, so the three always list the same rows.

Filters (the query parameters of all three): `key_id`, `model` (the model billed), `status`
(`ok` = below 400, `error` = 400 or more, or an exact HTTP status), `from` / `to` (UTC dates,
both included), `request_id` (exact) and `transaction` (the ledger transaction that charged the
rows: a drained batch's requests of the account). Rows come newest first by id, read by keyset (`id <`
the last one seen), never by offset, from the indexes of migration 0008; a date range is first
turned into an id range by usage_daily's first/last usage ids of its days (each day's rows lie
within them), then checked on created_at exactly, so a range far in the past reads no usage
rows at all; without a range the account's own first and last ids bound the rows read
(bench/console_logs.py measures each).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Select, false, func, select
from sqlalchemy.orm import Session

from ..models import Usage, UsageDaily

USAGE = Usage.__table__
FILTER_NAMES = ("key_id", "model", "status", "from", "to", "request_id", "transaction")
STATUS_CHOICES = ("ok", "error")
CSV_BATCH = 5000


class FilterError(ValueError):
    """A filter parameter that is not valid: its name and what it must be."""

    def __init__(self, name: str, requirement: str):
        super().__init__(f"'{name}' must be {requirement}.")
        self.name = name
        self.requirement = requirement


@dataclass(frozen=True)
class UsageFilters:
    key_id: int | None = None
    model: str = ""
    status: str = ""  # "", "ok", "error" or an HTTP status such as "429"
    date_from: date | None = None
    date_to: date | None = None
    request_id: str = ""
    transaction_id: int | None = None

    def params(self) -> dict[str, str]:
        """The filters as query parameters (only those set), for links that keep them."""
        values = {"key_id": "" if self.key_id is None else str(self.key_id), "model": self.model,
                  "status": self.status, "from": self.date_from.isoformat() if self.date_from else "",
                  "to": self.date_to.isoformat() if self.date_to else "", "request_id": self.request_id,
                  "transaction": "" if self.transaction_id is None else str(self.transaction_id)}
        return {name: value for name, value in values.items() if value}


def parse(args: Mapping[str, str]) -> UsageFilters:
    """The filters of a request's query parameters (empty ones are unset); FilterError if one is
    not valid."""
    def arg(name: str) -> str:
        return (args.get(name) or "").strip()

    key_id, transaction = arg("key_id"), arg("transaction")
    if key_id and not _is_id(key_id, 2**31):
        raise FilterError("key_id", "a key id (an integer)")
    if transaction and not _is_id(transaction, 2**63):
        raise FilterError("transaction", "a transaction id (an integer)")
    status = arg("status").lower()
    if status and status not in STATUS_CHOICES and not (status.isascii() and status.isdigit()
                                                        and 100 <= int(status) <= 599):
        raise FilterError("status", "ok, error or an HTTP status from 100 to 599")
    date_from, date_to = _date(arg("from"), "from"), _date(arg("to"), "to")
    if date_from and date_to and date_from > date_to:
        raise FilterError("to", "the same day as 'from' or later")
    request_id = arg("request_id")
    if len(request_id) > 64:
        raise FilterError("request_id", "a request id (at most 64 characters)")
    model = arg("model")
    if len(model) > 200:
        raise FilterError("model", "a model name (at most 200 characters)")
    return UsageFilters(int(key_id) if key_id else None, model, status, date_from, date_to, request_id,
                        int(transaction) if transaction else None)


def _is_id(text: str, bound: int) -> bool:
    return text.isascii() and text.isdigit() and int(text) < bound


def _date(text: str, name: str) -> date | None:
    if not text:
        return None
    try:
        if len(text) == 10:  # fromisoformat also takes 20250131 and week dates
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise FilterError(name, "a UTC date as YYYY-MM-DD")


class UsageQuery:
    """The account's usage rows that pass the filters, between the ids usage_daily bounds them by.

    `rows(before, after)` is the query of one side of a keyset cursor, the cursor merged into
    those bounds: SQLite ranges an index over the *first* upper (lower) bound term of a column and
    only filters by the others, so a second `id < before` term would have every deep page (and
    every CSV batch) read down from the top of the bounds.
    """

    def __init__(self, session: Session, account_id: int, filters: UsageFilters):
        query = select(USAGE).where(USAGE.c.account_id == account_id)
        if filters.request_id:
            query = query.where(USAGE.c.request_id == filters.request_id)
        if filters.key_id is not None:
            query = query.where(USAGE.c.key_id == filters.key_id)
        if filters.transaction_id is not None:
            query = query.where(USAGE.c.transaction_id == filters.transaction_id)
        if filters.model:
            query = query.where(USAGE.c.model == filters.model)
        if filters.status:
            query = query.where(*_status_terms(filters.status))
        self.query, self.low, self.high, self.empty = _within_ids(session, account_id, filters, query)

    def rows(self, before: int | None = None, after: int | None = None) -> Select:
        """Every column of the rows with ids below `before` and above `after` (None: no such
        limit); order and limit are the caller's."""
        if self.empty:
            return self.query.where(false())
        high = _tightest(min, self.high, None if before is None else before - 1)
        low = _tightest(max, self.low, None if after is None else after + 1)
        query = self.query
        if high is not None:
            query = query.where(USAGE.c.id <= high)
        if low is not None:
            query = query.where(USAGE.c.id >= low)
        return query


def _tightest(pick, bound: int | None, cursor: int | None) -> int | None:
    return bound if cursor is None else cursor if bound is None else pick(bound, cursor)


def _status_terms(status: str) -> list:
    """Failed rows are read from their partial index (`status >= 400`, spelled as its WHERE is, so
    SQLite sees it applies; an exact error status is filtered within it). Any other status test is
    on `status + 0`, which no index covers: a planner that ranged over a status index would have
    to sort the account's succeeded rows, most of them, where the account's own index reads them
    newest first."""
    failed = USAGE.c.status >= 400
    if status == "error":
        return [failed]
    if status == "ok":
        return [USAGE.c.status + 0 < 400]
    code = int(status)
    return [failed, USAGE.c.status == code] if code >= 400 else [USAGE.c.status + 0 == code]


def _within_ids(session: Session, account_id: int, filters: UsageFilters, query: Select):
    """(query, low, high, empty): the ids usage_daily gives the account's rows (of the date
    range's days, if any; each day's rows lie within its first and last ids), and the query
    narrowed to the range's rows exactly on created_at. Bounds without a range too: PostgreSQL
    would otherwise read an account's newest rows backwards along the primary key from the
    table's newest row, through every newer row of other accounts, when its statistics say the
    account has most of the rows."""
    days = select(func.min(UsageDaily.first_usage_id), func.max(UsageDaily.last_usage_id)).where(
        UsageDaily.account_id == account_id)
    if filters.date_from:
        days = days.where(UsageDaily.day >= filters.date_from)
        query = query.where(USAGE.c.created_at >= _midnight(filters.date_from))
    if filters.date_to:
        days = days.where(UsageDaily.day <= filters.date_to)
        query = query.where(USAGE.c.created_at < _midnight(filters.date_to + timedelta(days=1)))
    first, last = session.execute(days).one()
    # No usage_daily rows: none in the range, or (rows written without them) no bounds known.
    empty = first is None and bool(filters.date_from or filters.date_to)
    return query, first, last, empty


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def newest_first(query: Select, limit: int) -> Select:
    return query.order_by(USAGE.c.id.desc()).limit(limit)


def batches(session: Session, usage: UsageQuery, columns=None, size: int = CSV_BATCH) -> Iterator[list]:
    """Every row of the query (its `columns`, the first of them the id; default: all), newest
    first, in lists of `size`, each list one keyset query: a CSV of any length without holding it
    in memory or paging by offset."""
    before = None
    while True:
        query = usage.rows(before)
        if columns is not None:
            query = query.with_only_columns(*columns)
        rows = session.execute(newest_first(query, size)).all()
        if rows:
            yield rows
        if len(rows) < size:
            return
        before = rows[-1][0]
