"""Keyset pages for the console's long lists (logs, transactions): "Older" links carry
?before=<the page's last id>, "Newer" links ?after=<its first id>, so a page costs one index
range read however deep it is, and rows arriving meanwhile never shift a page."""
from __future__ import annotations

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


def keyset_page(session, query: Select, column, limit: int = PAGE_SIZE) -> Page:
    """A page of query newest first by column, where this request's ?before= or ?after= says.
    Each row gets the column's value as `page_cursor`."""
    query = query.add_columns(column.label("page_cursor"))
    before, after = cursor_arg("before"), cursor_arg("after")
    if after is not None and before is None:
        rows = session.execute(query.where(column > after).order_by(column.asc()).limit(limit + 1)).all()
        more_newer = len(rows) > limit
        rows = rows[:limit][::-1]
        return Page(rows, rows[0].page_cursor if more_newer else None, rows[-1].page_cursor if rows else None)
    if before is not None:
        query = query.where(column < before)
    rows = session.execute(query.order_by(column.desc()).limit(limit + 1)).all()
    more_older = len(rows) > limit
    rows = rows[:limit]
    newer = rows[0].page_cursor if rows and before is not None else None
    return Page(rows, newer, rows[-1].page_cursor if more_older else None)
