"""`tollgate invoice list|pdf` and `tollgate statement`: the invoices, credit notes and statements
customers download from the console, for the operator (billing/documents.py renders them)."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import click
from sqlalchemy import select

from .. import db, exact_json
from ..accounts import accounts
from ..billing import documents, invoices, statements
from ..models import Account, Invoice, utc_timestamp
from ..money import format_usd, money_fields
from ..settings import Settings
from .accounts import _table
from .common import UserMistake

DAY = click.DateTime(formats=["%Y-%m-%d"])


@click.group()
def invoice() -> None:
    """Issued invoices and credit notes."""


@invoice.command("list")
@click.argument("email", required=False)
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON array instead of a table.")
@click.pass_obj
def invoice_list(settings: Settings, email: str | None, limit: int, as_json: bool) -> None:
    """Invoices and credit notes, newest first: every account's, or the account's of EMAIL."""
    with db.read_session(settings) as session:
        query = select(Invoice, Account.email).join(Account, Account.id == Invoice.account_id)
        if email is not None:
            query = query.where(Invoice.account_id == _account(session, email).id)
        found = [(invoices.document(row), owner) for row, owner in
                 session.execute(query.order_by(Invoice.id.desc()).limit(limit))]
    if as_json:
        click.echo(exact_json.dumps([_item(document, owner) for document, owner in found]))
        return
    _table(("NUMBER", "KIND", "ISSUED", "ACCOUNT", "NET", "TAX", "TOTAL", "CORRECTS"),
           [(document.number, documents.KIND_TITLES[document.kind].lower(),
             documents.day(document.issued_at, statements.zone_or_utc(document.time_zone)), owner,
             format_usd(document.net_nano), f"{format_usd(document.tax_nano)} ({documents.percent(document.tax_rate)})",
             format_usd(document.total_nano), document.refers_to or "") for document, owner in found],
           right={4, 5, 6})
    click.echo(f"{len(found)} invoices and credit notes", err=True)


def _item(document: invoices.InvoiceDocument, email: str) -> dict:
    return {"number": document.number, "kind": document.kind, "account_id": document.account_id, "email": email,
            "transaction_id": document.transaction_id, "issued_at": utc_timestamp(document.issued_at),
            "paid_at": utc_timestamp(document.paid_at), "time_zone": document.time_zone,
            "currency": document.currency, "tax_rate": format(document.tax_rate, "f"),
            "reverse_charge": document.reverse_charge, "refers_to": document.refers_to,
            **money_fields(net=document.net_nano, tax=document.tax_nano, total=document.total_nano),
            "issuer": document.issuer, "customer": document.customer, "lines": document.lines,
            "payment": document.payment, "note": document.note}


@invoice.command("pdf")
@click.argument("number")
@click.option("--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), required=True,
              help="The PDF file to write.")
@click.pass_obj
def invoice_pdf(settings: Settings, number: str, output: Path) -> None:
    """Write the invoice or credit note NUMBER as PDF."""
    with db.read_session(settings) as session:
        found = invoices.by_number(session, number)
        if found is None:
            raise UserMistake(f"no invoice or credit note numbered {number.strip()!r}")
        pdf = documents.invoice_pdf(settings, found)
    output.write_bytes(pdf)
    click.echo(f"wrote {found.number} to {output} ({len(pdf)} bytes)")


@click.command("statement")
@click.argument("email")
@click.option("--from", "start", type=DAY, required=True, help="The first day (YYYY-MM-DD), in the account's zone.")
@click.option("--to", "end", type=DAY, required=True, help="The last day, included.")
@click.option("--csv", "as_csv", is_flag=True, help="The statement as CSV (on stdout unless --output).")
@click.option("--pdf", "as_pdf", is_flag=True, help="The statement as PDF (needs --output).")
@click.option("--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write the CSV or PDF to this file.")
@click.pass_obj
def statement_command(settings: Settings, email: str, start, end, as_csv: bool, as_pdf: bool,
                      output: Path | None) -> None:
    """The account's statement of the days --from to --to (both included, in its time zone):
    opening balance, each credit, bonus, refund, adjustment and expiry, usage per model and per
    key, closing balance. A summary as text, or --csv, or --pdf."""
    start, end = start.date(), end.date()
    if start > end:
        raise UserMistake(f"--from {start.isoformat()} is after --to {end.isoformat()}")
    if as_csv and as_pdf:
        raise UserMistake("give --csv or --pdf, not both")
    if as_pdf and output is None:
        raise UserMistake("--pdf needs --output FILE")
    if output is not None and not (as_csv or as_pdf):
        raise UserMistake("--output goes with --csv or --pdf")
    with db.read_session(settings) as session:
        account = _account(session, email)
        found = statements.statement(session, account, start, end)
        if as_pdf:
            pdf = documents.statement_pdf(settings, account, found)
    if as_pdf:
        output.write_bytes(pdf)
        click.echo(f"wrote the statement of {account.email} to {output} ({len(pdf)} bytes)")
    elif as_csv and output is not None:
        output.write_text(documents.statement_csv(found), encoding="utf-8")
        click.echo(f"wrote the statement of {account.email} to {output}")
    elif as_csv:
        click.echo(documents.statement_csv(found), nl=False)
    else:
        _summary(found)


def _account(session, email: str) -> Account:
    found = accounts.find_by_email(session, email)
    if found is None:
        raise UserMistake(f"no account with email {email.strip()!r}")
    return found


def _summary(found: statements.Statement) -> None:
    click.echo(f"statement of {found.email} (account {found.account_id}), {_days(found.start, found.end)}, "
               f"times in {found.time_zone}")
    click.echo(f"opening balance  {format_usd(found.opening_nano)}")
    click.echo("\nmovements")
    _table(("TIME", "KIND", "TRANSACTION", "AMOUNT", "DESCRIPTION"),
           [(documents.minute(movement.at), documents.MOVEMENT_TITLES[name].lower(), movement.transaction_id,
             format_usd(movement.amount_nano), movement.description)
            for name, listed in found.movements.items() for movement in listed], right={2, 3})
    for heading, lines in (("usage by model", found.usage_by_model), ("usage by key", found.usage_by_key)):
        click.echo(f"\n{heading}")
        _table(("MODEL" if heading.endswith("model") else "KEY", "REQUESTS", "AMOUNT"),
               [(line.label, line.requests, format_usd(line.amount_nano)) for line in lines], right={1, 2})
    click.echo(f"\nusage            {format_usd(found.usage_nano)} ({found.requests} requests)")
    click.echo(f"closing balance  {format_usd(found.closing_nano)}")


def _days(start: date, end: date) -> str:
    return f"{start.isoformat()} to {end.isoformat()}"
