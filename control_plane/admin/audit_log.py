"""The Audit log page (/admin/audit) and its CSV (/admin/audit.csv): every change to money and
configuration (control_plane/audit.py writes them), newest first, filtered.

Filters (the query parameters of the page, its CSV and the admin API's GET /audit; `tollgate
audit` builds the same AuditFilters): `actor` (a part of who, any case), `entity`, `entity_id`
and `action` (exact), `from` / `to` (UTC dates, both included) and `since` (a UTC date or time).
Rows are read by keyset on the id, never by offset; the CSV streams a batch at a time.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from flask import Response, render_template, request, stream_with_context
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from ..audit import ENTITIES
from ..billing.usage_log import FilterError
from ..console.paging import below_above, keyset_page
from ..models import AuditEntry, utc_timestamp, utcnow
from ..money import format_usd
from . import admin
from .sessions import admin_required, read_session

# What the filter fields suggest: the flush hook's entities and actions, the ledger's postings,
# and a chain rescan (the log takes any).
KNOWN_ENTITIES = tuple(sorted({*ENTITIES.values(), "ledger_transaction", "chain_cursor"}))
KNOWN_ACTIONS = ("create", "update", "delete", "post", "rescan")
LIMITS = {"actor": 200, "entity": 64, "entity_id": 64, "action": 32}
CSV_COLUMNS = ("id", "created_at", "actor", "actor_account_id", "ip", "action", "entity", "entity_id", "reason",
               "before", "after")
CSV_BATCH = 5000


@dataclass(frozen=True)
class AuditFilters:
    actor: str = ""
    entity: str = ""
    entity_id: str = ""
    action: str = ""
    date_from: date | None = None
    date_to: date | None = None
    since: datetime | None = None

    def params(self) -> dict[str, str]:
        """The filters as query parameters (only those set), for links that keep them."""
        values = {"actor": self.actor, "entity": self.entity, "entity_id": self.entity_id, "action": self.action,
                  "from": self.date_from.isoformat() if self.date_from else "",
                  "to": self.date_to.isoformat() if self.date_to else "",
                  "since": utc_timestamp(self.since) if self.since else ""}
        return {name: value for name, value in values.items() if value}


def parse_filters(args: Mapping[str, str]) -> AuditFilters:
    """The filters of a request's query parameters (empty ones are unset); FilterError if one is
    not valid."""
    def arg(name: str) -> str:
        text = (args.get(name) or "").strip()
        if name in LIMITS and len(text) > LIMITS[name]:
            raise FilterError(name, f"at most {LIMITS[name]} characters")
        return text

    date_from, date_to = parse_date(arg("from"), "from"), parse_date(arg("to"), "to")
    if date_from and date_to and date_from > date_to:
        raise FilterError("to", "the same day as 'from' or later")
    since = arg("since")
    return AuditFilters(arg("actor"), arg("entity").lower(), arg("entity_id"), arg("action").lower(), date_from,
                        date_to, parse_moment(since, "since") if since else None)


def parse_date(text: str, name: str) -> date | None:
    if not text:
        return None
    if len(text) == 10:  # fromisoformat also takes 20250131 and week dates
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise FilterError(name, "a UTC date as YYYY-MM-DD")


def parse_moment(text: str, name: str) -> datetime:
    """A UTC date (its midnight) or an ISO 8601 time (UTC unless it gives its offset)."""
    if len(text) == 10:
        return _midnight(parse_date(text, name))
    try:
        moment = datetime.fromisoformat(text) if 10 < len(text) <= 40 else None
    except ValueError:
        moment = None
    if moment is None:
        raise FilterError(name, "a UTC date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM[:SS][Z or ±HH:MM])")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def entries_query(filters: AuditFilters) -> Select:
    """The entries the filters select (order and paging are the caller's, by AuditEntry.id)."""
    query = select(AuditEntry)
    if filters.actor:
        query = query.where(AuditEntry.actor.icontains(filters.actor, autoescape=True))
    for column, value in ((AuditEntry.entity, filters.entity), (AuditEntry.entity_id, filters.entity_id),
                          (AuditEntry.action, filters.action)):
        if value:
            query = query.where(column == value)
    if filters.date_from:
        query = query.where(AuditEntry.created_at >= _midnight(filters.date_from))
    if filters.date_to:
        query = query.where(AuditEntry.created_at < _midnight(filters.date_to + timedelta(days=1)))
    if filters.since:
        query = query.where(AuditEntry.created_at >= filters.since)
    return query


def newest(session: Session, filters: AuditFilters, limit: int) -> list[AuditEntry]:
    return list(session.scalars(entries_query(filters).order_by(AuditEntry.id.desc()).limit(limit)))


def entry_item(entry: AuditEntry) -> dict:
    """An entry as the admin API and `tollgate audit --json` show it (before/after as objects)."""
    return {"id": entry.id, "created_at": utc_timestamp(entry.created_at), "actor": entry.actor,
            "actor_account_id": entry.actor_account_id, "ip": entry.ip, "action": entry.action,
            "entity": entry.entity, "entity_id": entry.entity_id, "before": _values(entry.before),
            "after": _values(entry.after), "reason": entry.reason}


def _values(text: str | None) -> dict | None:
    return None if text is None else json.loads(text)


@dataclass(frozen=True)
class Change:
    """One field of an entry: its value before and after, as text (None: the entry has no value
    on that side, as a creation has none before)."""

    field: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        """Changed in an update (a creation's or removal's fields have one side only)."""
        return self.before is not None and self.after is not None and self.before != self.after


def changes(entry: AuditEntry) -> list[Change]:
    """The entry's fields side by side, in name order."""
    before, after = _values(entry.before), _values(entry.after)
    names = sorted({*(before or {}), *(after or {})})
    return [Change(name, _shown(name, before, name in (before or {})), _shown(name, after, name in (after or {})))
            for name in names]


def _shown(name: str, values: dict | None, present: bool) -> str | None:
    if values is None or not present:
        return None
    value = values[name]
    text = value if isinstance(value, str) else json.dumps(value)
    if name.endswith("_nano") and type(value) is int:
        text += f" ({format_usd(value)})"
    return text


@admin.get("/audit")
@admin_required
def audit_log():
    session = read_session()
    try:
        filters, error = parse_filters(request.args), None
    except FilterError as exc:
        filters, error = AuditFilters(), str(exc)
    page = None if error else keyset_page(session, below_above(entries_query(filters), AuditEntry.id), AuditEntry.id)
    return render_template("admin/audit.html", nav="audit", page=page, filters=filters, error=error,
                           changes=changes, entities=KNOWN_ENTITIES, actions=KNOWN_ACTIONS), 400 if error else 200


@admin.get("/audit.csv")
@admin_required
def audit_csv():
    """The filtered log as CSV, streamed a keyset batch at a time: any length in constant memory."""
    try:
        filters = parse_filters(request.args)
    except FilterError as exc:
        return Response(f"{exc}\n", status=400, mimetype="text/plain")
    filename = f"tollgate-audit-{utcnow().date().isoformat()}.csv"
    return Response(stream_with_context(_csv_chunks(read_session(), filters)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


def _csv_chunks(session: Session, filters: AuditFilters) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    query, before = entries_query(filters), None
    while True:
        batch = session.scalars((query if before is None else query.where(AuditEntry.id < before))
                                .order_by(AuditEntry.id.desc()).limit(CSV_BATCH)).all()
        for entry in batch:
            writer.writerow((entry.id, utc_timestamp(entry.created_at), entry.actor, entry.actor_account_id, entry.ip,
                             entry.action, entry.entity, entry.entity_id, entry.reason, entry.before, entry.after))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(batch) < CSV_BATCH:
            return
        before = batch[-1].id
