"""Keyset pages for the console's long lists (logs, transactions): "Older" links carry
?before=<the page's last id>, "Newer" links ?after=<its first id>, so a page costs one index
range read however deep it is, and rows arriving meanwhile never shift a page."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import request
from sqlalchemy import Select

from ..api.context import MAX_ID

PAGE_SIZE = 50


@dataclass(frozen=True)
class Page:
    rows: list
    newer: int | None  # the ?after= of the "Newer" link (None: this page is the newest)
    older: int | None  # the ?before= of the "Older" link (None: this page is the oldest)


def cursor_arg(name: str) -> int | None:
    """?before= / ?after= as an id; anything else counts as absent (a page, not an error)."""
    raw = request.args.get(name, "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_ID else None


def keyset_page(session, rows: Callable[[int | None, int | None], Select], column, limit: int = PAGE_SIZE) -> Page:
    """A page newest first by column, where this request's ?before= or ?after= says. `rows(before,
    after)` is the query of the rows with column below `before` and above `after` (None: no such
    limit): see `below_above`, or billing/usage_log.UsageQuery.rows, which merges the cursor into
    its own id bounds. Each row gets the column's value as `page_cursor`."""
    before, after = cursor_arg("before"), cursor_arg("after")
    if after is not None and before is None:
        query = rows(None, after).add_columns(column.label("page_cursor"))
        found = session.execute(query.order_by(column.asc()).limit(limit + 1)).all()
        more_newer = len(found) > limit
        found = found[:limit][::-1]
        return Page(found, found[0].page_cursor if more_newer else None, found[-1].page_cursor if found else None)
    query = rows(before, None).add_columns(column.label("page_cursor"))
    found = session.execute(query.order_by(column.desc()).limit(limit + 1)).all()
    more_older = len(found) > limit
    found = found[:limit]
    newer = found[0].page_cursor if found and before is not None else None
    return Page(found, newer, found[-1].page_cursor if more_older else None)


def below_above(query: Select, column) -> Callable[[int | None, int | None], Select]:
    """keyset_page's `rows` for a query without bounds of its own on column."""
    def rows(before: int | None, after: int | None) -> Select:
        if before is not None:
            return query.where(column < before)
        return query if after is None else query.where(column > after)

    return rows
