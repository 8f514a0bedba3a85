"""`tollgate audit`: the audit log of every change to money and configuration, newest first (the
admin console's Audit log page and the admin API's GET /audit read the same entries)."""
from __future__ import annotations

import click

from .. import db, exact_json
from ..admin.audit_log import AuditFilters, changes, entry_item, newest, parse_moment
from ..billing.usage_log import FilterError
from ..settings import Settings


class Moment(click.ParamType):
    """A UTC date (its midnight) or an ISO 8601 time, as the admin console's filters take them."""

    name = "date|datetime"

    def convert(self, value, param, ctx):
        try:
            return parse_moment(value.strip(), param.name if param else "since")
        except FilterError as exc:
            self.fail(f"{value!r}: {exc.requirement}", param, ctx)


@click.command("audit")
@click.option("--since", type=Moment(), help="Only entries from this UTC date (YYYY-MM-DD) or time "
              "(2026-12-01T09:30:00Z; another offset may be given) on.")
@click.option("--entity", help="Only entries about this kind of thing: account, api_key, provider, model, route, "
              "price_version, ledger_transaction, chain_cursor, …")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON array (before and after as objects) instead of a table.")
@click.pass_obj
def audit_command(settings: Settings, since, entity: str | None, limit: int, as_json: bool) -> None:
    """Who changed what, when and from where, with the values before and after (secrets
    redacted); newest first."""
    filters = AuditFilters(entity=(entity or "").strip().lower(), since=since)
    with db.read_session(settings) as session:
        entries = newest(session, filters, limit)
    if as_json:
        click.echo(exact_json.dumps([entry_item(entry) for entry in entries]))
        return
    for entry in entries:
        where = f" from {entry.ip}" if entry.ip else ""
        fields = "; ".join(_change_text(change) for change in changes(entry)) or "-"
        reason = f" ({entry.reason})" if entry.reason else ""
        click.echo(f"{entry.id:>6} {entry.created_at:%Y-%m-%d %H:%M:%S} {entry.actor}{where} {entry.action} "
                   f"{entry.entity} {entry.entity_id}: {fields}{reason}")
    click.echo(f"{len(entries)} entries", err=True)


def _change_text(change) -> str:
    if change.before is None:
        return f"{change.field}={change.after}"
    if change.after is None:
        return f"{change.field} was {change.before}"
    return f"{change.field} {change.before} → {change.after}"
