"""`tollgate prices`: syncing routes' costs from a machine-readable price list, and the changes a
sync held for an admin (catalog/price_sync.py)."""
from __future__ import annotations

import click

from .. import audit, db, exact_json
from ..catalog import price_sync
from ..money import format_usd
from ..settings import Settings
from ..usage_classes import PRICE_FIELDS
from .common import REPUBLISH_HINT

# How a route's outcome reads when it does not depend on --apply.
STATUS_TEXT = {"unchanged": "unchanged", "missing": "not in the list: left as it is",
               "unusable": "the list gives no usable price: left as it is"}


@click.group()
def prices() -> None:
    """Provider prices from a price list (LiteLLM's or OpenRouter's)."""


@prices.command("sync")
@click.option("--source", metavar="URL_OR_FILE",
              help="The price list: an http(s) URL or a file (default: TOLLGATE_PRICE_SYNC_SOURCE).")
@click.option("--format", "fmt", type=click.Choice(price_sync.FORMATS),
              help="litellm: model_prices_and_context_window.json; openrouter: GET /api/v1/models "
                   "(default: TOLLGATE_PRICE_SYNC_FORMAT).")
@click.option("--apply", is_flag=True, help="Make the changes (without it nothing changes: the diff is shown).")
@click.option("--add-new", is_flag=True, help="Add the list's entries no route names as models charged at cost on "
                                             "--provider (model and upstream name: the entry's id).")
@click.option("--provider", "provider_name", help="The provider that serves the models --add-new adds.")
@click.option("--json", "as_json", is_flag=True, help="The diff as JSON (every class's price, exact).")
@click.pass_obj
def sync_command(settings: Settings, source: str | None, fmt: str | None, apply: bool, add_new: bool,
                 provider_name: str | None, as_json: bool) -> None:
    """Compare each route that has a --price-source-id with its entry in the list and show the
    changes per route and class. With --apply they become new cost versions, except a change
    that raises a price more than TOLLGATE_PRICE_SYNC_MAX_RISE_PERCENT, makes one $0 or removes
    one: that is held for an admin to approve (`tollgate prices held`). A list that cannot be
    read changes nothing (exit status 1). Nothing is ever deleted."""
    source = source or settings.price_sync_source
    if not source:
        raise click.UsageError("give the price list with --source (or set TOLLGATE_PRICE_SYNC_SOURCE)")
    try:
        report = price_sync.sync(settings, source, fmt or settings.price_sync_format, apply, add_new, provider_name)
    except price_sync.SourceError as exc:
        raise click.ClickException(f"{exc}; nothing changed") from None
    if as_json:
        click.echo(exact_json.dumps(report.as_dict()))
    else:
        _echo_report(report)
    if report.publish_error:
        raise click.ClickException(f"saved, but not live yet: {report.publish_error}; {REPUBLISH_HINT}")


def _usd(stored: int | None, charged: int, price_field: str) -> str:
    """'$3.00', or for a class without its own price '$3.00 (as input)'."""
    if stored is None:
        return f"{format_usd(charged)} (as {price_sync.FALLBACK[price_field]})"
    return format_usd(stored)


def _echo_changes(changes: list[price_sync.ClassChange]) -> None:
    rows = [(change.field, _usd(change.current, change.current_charged, change.field),
             _usd(change.proposed, change.proposed_charged, change.field), change.percent_text())
            for change in changes]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for name, old, new, percent in rows:
        click.echo(f"    {name.ljust(widths[0])}  {old.rjust(widths[1])} → {new.ljust(widths[2])}  {percent}")


def _route_status(route: price_sync.RouteSync, applied: bool) -> str:
    if route.status in STATUS_TEXT:
        return STATUS_TEXT[route.status]
    why = "; ".join(route.reasons)
    if route.status == "changed":
        return f"changed: cost version {route.cost_version_id}" if applied else "would change"
    if route.status == "held":
        return f"held for an admin (price hold {route.hold_id}): {why}" if applied else f"would be held: {why}"
    return f"held already (price hold {route.hold_id}), waiting for an admin: {why}"


def _echo_report(report: price_sync.SyncReport) -> None:
    mode = "applied" if report.applied else "dry run, nothing changed (--apply applies it)"
    click.echo(f"price list {report.source} ({report.format}, {report.entries} entries with prices): {mode}")
    for route in report.routes:
        click.echo(f"route {route.route_id} of {route.model} ({route.provider}/{route.upstream_model}, entry "
                   f"{route.price_source_id}): {_route_status(route, report.applied)}")
        if route.changes:
            _echo_changes(route.changes)
        for note in route.notes:
            click.echo(f"    note: {note}")
    for new in report.new_models:
        entry = new.entry
        if not new.added:
            click.echo(f"new model {entry.id}: not added: {new.reason}")
            continue
        done = f"added, cost version {new.cost_version_id}" if report.applied else "would be added"
        prices = ", ".join(f"{name} {format_usd(entry.prices[name])}" for name in PRICE_FIELDS
                           if entry.prices[name] is not None)
        click.echo(f"new model {entry.id} on {report.provider}: {done} ({prices} per 1M tokens)")
        for note in entry.notes:
            click.echo(f"    note: {note}")
    click.echo(report.summary())


@prices.command("held")
@click.option("--decided", is_flag=True, help="The recently approved or rejected changes instead of pending ones.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, with every class's price, exact.")
@click.pass_obj
def held_command(settings: Settings, decided: bool, as_json: bool) -> None:
    """Price changes a sync held for approval (pending, oldest first)."""
    with db.session_scope(settings) as session:
        views = [price_sync.hold_view(session, hold) for hold in price_sync.holds(session, pending=not decided)]
        items = [view.as_dict() for view in views]
    if as_json:
        click.echo(exact_json.dumps(items))
        return
    if not views:
        click.echo("no decided price changes" if decided else "no price changes are waiting for approval")
    for view, item in zip(views, items, strict=True):
        state = item["state"] if item["state"] == "pending" else f"{item['state']} by {item['decided_by']}"
        click.echo(f"price hold {item['id']} ({state}{', stale: reject it' if view.stale and not decided else ''})"
                   f": route {item['route_id']} of {item['model']} ({item['provider']}/{item['upstream_model']}) "
                   f"from {item['source']}: {item['reason']}")
        _echo_changes([change for change in view.classes
                       if change.current != change.proposed or change.current_charged != change.proposed_charged])


@prices.command("approve")
@click.argument("hold_id", type=int)
@click.pass_obj
def approve_command(settings: Settings, hold_id: int) -> None:
    """Apply held price change HOLD_ID as its route's new cost version."""
    with db.session_scope(settings) as session:
        hold, version = price_sync.approve(session, hold_id, audit.current().name)
        model_id = version.model_id
    error = price_sync.publish_models(settings, [model_id])
    if error:
        raise click.ClickException(f"approved, but not live yet: {error}; {REPUBLISH_HINT}")
    click.echo(f"price hold {hold.id} approved: route {hold.route_id} now costs cost version {version.id}")


@prices.command("reject")
@click.argument("hold_id", type=int)
@click.pass_obj
def reject_command(settings: Settings, hold_id: int) -> None:
    """Reject held price change HOLD_ID: its route's cost stays as it is."""
    with db.session_scope(settings) as session:
        hold = price_sync.reject(session, hold_id)
    click.echo(f"price hold {hold.id} rejected: route {hold.route_id}'s cost stays as it is")
