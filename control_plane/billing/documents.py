"""Invoices, credit notes and statements as documents: HTML from the Jinja templates under
templates/documents/ (the same ones for the web and for print), PDF by WeasyPrint from that HTML,
and statements and their usage as CSV.

Amounts are shown exact (money.format_usd: cents when that is exact, else every decimal down to
the nano-dollar), never rounded; times in the document's zone, which the document states.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session

from ..models import Account, Invoice
from ..money import format_usd, nano_to_decimal
from ..settings import Settings
from ..usage_classes import USAGE_CLASSES
from . import invoices, statements

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
KIND_TITLES = {"invoice": "Invoice", "credit_note": "Credit note"}
# A statement's lists of movements: what one is called, and their total.
MOVEMENT_TITLES = {"credits": "Credit", "bonuses": "Bonus", "refunds": "Refund", "adjustments": "Adjustment",
                   "expiries": "Expiry"}
MOVEMENT_TOTALS = {"credits": "Credits", "bonuses": "Bonuses", "refunds": "Refunds", "adjustments": "Adjustments",
                   "expiries": "Expired credit"}
PAYMENT_METHODS = {"card": "Card", "usdt": "USDT"}
STATEMENT_COLUMNS = ("section", "time", "transaction", "description", "requests", "amount_usd", "amount_nano")
USAGE_COLUMNS = ("charged_at", "request_id", "requested_at", "model", "key_name", "key_prefix",
                 *(usage_class.column for usage_class in USAGE_CLASSES), "cost_usd", "cost_nano", "transaction")


@cache
def _standalone() -> Environment:
    """The templates outside a Flask app (the CLI, the worker): the same folder the app reads."""
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(), trim_blocks=True,
                       lstrip_blocks=True)


def _render(name: str, **context) -> str:
    environment = current_app.jinja_env if has_app_context() else _standalone()
    return environment.get_template(f"documents/{name}").render(
        usd=format_usd, day=day, minute=minute, percent=percent, lines_of=_lines_of, **context)


def _pdf(html: str) -> bytes:
    import weasyprint  # imported on use: it loads Pango, which the hot commands need not wait for

    return weasyprint.HTML(string=html, base_url=str(TEMPLATES / "documents")).write_pdf()


def day(moment: date | datetime, zone: ZoneInfo | None = None) -> str:
    """'2 January 2026' (a datetime in the zone, if given)."""
    local = moment.astimezone(zone) if zone is not None else moment
    return f"{local.day} {local:%B %Y}"


def minute(moment: datetime) -> str:
    """'2026-01-02 09:00' (a statement's times are in its zone already)."""
    return moment.strftime("%Y-%m-%d %H:%M")


def percent(rate: Decimal) -> str:
    return f"{format(rate.normalize(), 'f')}%"


def _lines_of(text: str) -> list[str]:
    """An address's lines."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def invoice_html(invoice: Invoice) -> str:
    document = invoices.document(invoice)
    return _render("invoice.html", document=document, zone=statements.zone_or_utc(document.time_zone),
                   title=KIND_TITLES[document.kind], methods=PAYMENT_METHODS)


def invoice_pdf(settings: Settings, invoice: Invoice) -> bytes:
    """The invoice or credit note as PDF (its parties are its own snapshot, not today's settings)."""
    return _pdf(invoice_html(invoice))


def statement_html(settings: Settings, account: Account, statement: statements.Statement) -> str:
    movements = sorted(((MOVEMENT_TITLES[name], movement) for name, listed in statement.movements.items()
                        for movement in listed), key=lambda item: (item[1].at, item[1].transaction_id))
    totals = [(MOVEMENT_TOTALS[name], sum(movement.amount_nano for movement in listed))
              for name, listed in statement.movements.items()]
    return _render("statement.html", statement=statement, account=account, issuer=settings.invoice_issuer,
                   movements=movements, totals=totals)


def statement_pdf(settings: Settings, account: Account, statement: statements.Statement) -> bytes:
    return _pdf(statement_html(settings, account, statement))


def _exact(nano: int) -> str:
    """Exact decimal USD text for a CSV: '-0.00001725', '100'."""
    return format(nano_to_decimal(nano), "f")


def statement_csv(statement: statements.Statement) -> str:
    """The statement as CSV: a row for the opening balance, each movement, each usage line per model
    and per key (each list alone adds up to the usage), and the closing balance; times in ISO 8601
    with the zone's offset."""
    zone = ZoneInfo(statement.time_zone)
    since, until = statements.bounds(zone, statement.start, statement.end)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(STATEMENT_COLUMNS)
    writer.writerow(("opening balance", since.astimezone(zone).isoformat(), "", f"Balance in {statement.time_zone}",
                     "", _exact(statement.opening_nano), statement.opening_nano))
    for name, listed in statement.movements.items():
        for movement in listed:
            writer.writerow((MOVEMENT_TITLES[name].lower(), movement.at.isoformat(), movement.transaction_id,
                             movement.description, "", _exact(movement.amount_nano), movement.amount_nano))
    for section, lines in (("usage by model", statement.usage_by_model), ("usage by key", statement.usage_by_key)):
        for line in lines:
            writer.writerow((section, "", "", line.label, line.requests, _exact(line.amount_nano), line.amount_nano))
    writer.writerow(("closing balance", until.astimezone(zone).isoformat(), "", f"Balance in {statement.time_zone}",
                     "", _exact(statement.closing_nano), statement.closing_nano))
    return buffer.getvalue()


def usage_csv(session: Session, account: Account, start: date, end: date) -> Iterator[str]:
    """The statement's usage as CSV, one row per charged request (statements.usage_rows), streamed
    in chunks; the cost column adds up to the statement's usage."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(USAGE_COLUMNS)
    for count, row in enumerate(statements.usage_rows(session, account, start, end), 1):
        writer.writerow((row.charged_at.isoformat(), row.request_id,
                         row.requested_at.isoformat() if row.requested_at else "", row.model, row.key_name,
                         row.key_prefix, *(row.tokens[usage_class.price] for usage_class in USAGE_CLASSES),
                         _exact(row.cost_nano), row.cost_nano, row.transaction_id))
        if count % statements.YIELD_PER == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
