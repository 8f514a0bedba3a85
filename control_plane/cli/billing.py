"""`tollgate reconcile|quarantine`: proving Redis and the ledger agree, and the usage records
that could not be recorded."""
from __future__ import annotations

import click
from sqlalchemy import select

from .. import db, exact_json
from ..billing import reconcile_runs
from ..billing.usage_drain import quarantine_item
from ..models import UsageQuarantine
from ..money import format_usd
from ..settings import Settings


@click.command("reconcile")
@click.option("--json", "as_json", is_flag=True, help="The whole report as one JSON object.")
@click.pass_obj
def reconcile_command(settings: Settings, as_json: bool) -> None:
    """Compare every account's Redis balance and every key's spend with the SQL ledger and check
    the money invariants; exit 1 on any drift, broken invariant or quarantined usage record. The
    run is stored (the admin overview shows the last one, whoever ran it)."""
    _run, report = reconcile_runs.run(settings)
    if as_json:
        click.echo(exact_json.dumps(report.as_dict()))
    else:
        for row in report.accounts:
            redis_text = "missing" if row.redis_nano is None else format_usd(row.redis_nano)
            drift = "-" if row.drift_nano is None else format_usd(row.drift_nano)
            notes = [f"{row.undrained} records not drained yet"]
            if row.quarantined:
                notes.append(f"{row.quarantined} quarantined, costing {format_usd(row.quarantined_nano)}")
            if row.overage_nano:
                notes.append(f"overage {format_usd(row.overage_nano)}")
            click.echo(f"{'ok   ' if row.ok else 'DRIFT'} {row.account_id:>6} {row.email:<32} redis {redis_text:>18} "
                       f"expected {format_usd(row.expected_nano):>18} drift {drift} ({'; '.join(notes)})")
        for key in report.keys:
            click.echo(f"DRIFT key {key.key_id} (account {key.account_id}) spent: redis {format_usd(key.redis_nano)} "
                       f"expected {format_usd(key.expected_nano)} drift {format_usd(key.drift_nano)}")
        for violation in report.violations:
            click.echo(f"BROKEN {violation.check}: {violation.describe()}")
        for item in report.quarantined:
            click.echo(f"QUARANTINED {_quarantine_line(item)}")
    click.echo(f"{len(report.accounts)} accounts, {len(report.drifting)} with drift, "
               f"{len(report.keys)} keys with drift, "
               f"{len(report.violations)} broken invariants, {len(report.quarantined)} quarantined records; "
               f"overage {format_usd(report.overage_nano)}", err=True)
    if not report.ok:
        raise SystemExit(1)


@click.group()
def quarantine() -> None:
    """Usage records the worker could not record."""


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, with each packed record.")
@click.pass_obj
def quarantine_list(settings: Settings, as_json: bool) -> None:
    """Every quarantined usage record, newest first, with the reason."""
    with db.read_session(settings) as session:
        listed = [quarantine_item(row) for row in
                  session.scalars(select(UsageQuarantine).order_by(UsageQuarantine.id.desc()))]
    if as_json:
        click.echo(exact_json.dumps(listed))
        return
    for item in listed:
        click.echo(_quarantine_line(item))
    click.echo(f"{len(listed)} quarantined records", err=True)


def _quarantine_line(item: dict) -> str:
    """A quarantined record on one line: where it was, why, and what of it could be read."""
    def shown(name):
        return "?" if item[name] is None else item[name]

    cost = "?" if item["cost_nano"] is None else format_usd(item["cost_nano"])
    return (f"{item['created_at']} {item['stream']} {item['entry_id']} line {item['line']}: {item['reason']} "
            f"(request {shown('request_id')}, account {shown('account_id')}, key {shown('key_id')}, cost {cost})")
