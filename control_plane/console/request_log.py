"""The request log /console/logs, its CSV and a request's detail.

All three read billing/usage_log.py's query with the page's filters (the same as /api/v1/usage's),
only ever the signed-in account's rows: another account's request id is "not found" (404), never
"forbidden", so ids tell a guesser nothing.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal

from flask import Response, abort, g, render_template, request, stream_with_context
from sqlalchemy import String, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from .. import money
from ..billing import usage_log, wallet_history
from ..catalog import pricing
from ..models import ApiKey, LedgerTransaction, PriceVersion, UsageDaily, utcnow
from ..usage_classes import USAGE_CLASSES
from . import console
from .paging import keyset_page
from .sessions import login_required, read_session

USAGE = usage_log.USAGE
# The CSV's columns: the usage row's (read in this order, so most pass straight through), the key's
# name and prefix after its id, and the cost as exact decimal USD before its nano figure.
_CSV_BEFORE_COST = (
    "requested_model", "model", "upstream_model", "provider", "endpoint", "stream", "status", "error_code",
    "error_message", "billing_basis", *(usage.column for usage in USAGE_CLASSES),
)
_CSV_FROM_COST = ("cost_nano", "hold_nano", "latency_ms", "ttfb_ms", "attempts", "failed_statuses",
                  "price_version_id", "transaction_id")
CSV_COLUMNS = ("created_at", "request_id", "key_id", "key_name", "key_prefix", *_CSV_BEFORE_COST, "cost_usd",
               *_CSV_FROM_COST)


class _UtcTimestamp(FunctionElement):
    """A time column as models.utc_timestamp writes it (2025-01-31T12:00:00.123Z), formatted by
    the database: the CSV's rows skip Python's parsing and formatting of datetimes, a third of
    their cost."""

    type = String()
    inherit_cache = True
    name = "utc_timestamp"


@compiles(_UtcTimestamp, "sqlite")
def _utc_timestamp_sqlite(element, compiler, **kw):
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', {compiler.process(element.clauses, **kw)})"


@compiles(_UtcTimestamp, "postgresql")
def _utc_timestamp_postgresql(element, compiler, **kw):
    column = compiler.process(element.clauses, **kw)
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


_CSV_READ = [USAGE.c.id, _UtcTimestamp(USAGE.c.created_at),
             *(USAGE.c[name] for name in ("request_id", "key_id", *_CSV_BEFORE_COST, *_CSV_FROM_COST))]
_COST_AT = 4 + len(_CSV_BEFORE_COST)  # where cost_nano is in a row read with _CSV_READ


def account_keys(session, account_id: int) -> dict[int, ApiKey]:
    """The account's keys by id (revoked ones too: their rows stay in the log)."""
    keys = session.scalars(select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.id))
    return {key.id: key for key in keys}


def _billed_models(session, account_id: int) -> list[str]:
    """The models the account was billed for (usage_daily's, not a scan of its usage rows)."""
    return list(session.scalars(select(UsageDaily.model).where(UsageDaily.account_id == account_id)
                                .distinct().order_by(UsageDaily.model)))


@console.get("/logs")
@login_required
def logs():
    session = read_session()
    keys = account_keys(session, g.account.id)
    try:
        filters = usage_log.parse(request.args)
    except usage_log.FilterError as exc:
        filters, error = usage_log.UsageFilters(), str(exc)
    else:
        error = None
    page = None
    if error is None:
        page = keyset_page(session, usage_log.UsageQuery(session, g.account.id, filters).rows, USAGE.c.id)
    return render_template("console/logs.html", nav="logs", page=page, filters=filters, error=error,
                           keys=keys, models=_billed_models(session, g.account.id),
                           usage_classes=USAGE_CLASSES, args=request.args), 400 if error else 200


@console.get("/logs.csv")
@login_required
def logs_csv():
    """The filtered log as CSV, streamed a keyset batch at a time: any length in constant memory."""
    session = read_session()
    try:
        filters = usage_log.parse(request.args)
    except usage_log.FilterError as exc:
        return Response(f"{exc}\n", status=400, mimetype="text/plain")
    keys = {key_id: (key.name, key.prefix) for key_id, key in account_keys(session, g.account.id).items()}
    query = usage_log.UsageQuery(session, g.account.id, filters)
    filename = f"tollgate-usage-{utcnow().date().isoformat()}.csv"
    return Response(stream_with_context(_csv_chunks(session, query, keys)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Cache-Control": "no-store"})


def _csv_chunks(session, query, keys: dict[int, tuple[str, str]]):
    """The CSV, a chunk per keyset batch. Its inner loop is the CSV's speed (bench/console_logs.py):
    rows are plain tuples sliced into the writer, not objects."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    no_key = ("", "")
    for rows in usage_log.batches(session, query, _CSV_READ):
        for row in rows:
            writer.writerow((row[1], row[2], row[3], *keys.get(row[3], no_key), *row[4:_COST_AT],
                             _decimal_usd(row[_COST_AT]), *row[_COST_AT:]))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()  # the header of an empty log


def _decimal_usd(nano: int) -> str:
    """A cost (≥ 0) as exact decimal USD text, as format(money.nano_to_decimal(nano), "f") gives
    it ('0.00001725', '5'), without a Decimal per row."""
    whole, fraction = divmod(nano, money.NANO_PER_USD)
    return f"{whole}.{fraction:09d}".rstrip("0").rstrip(".") if fraction else str(whole)


@dataclass(frozen=True)
class ClassCharge:
    """One usage class of a request: tokens × price per 1M tokens = cost (exact, in nano-USD)."""

    label: str
    tokens: int
    price_nano: int  # per 1M tokens
    cost_nano: Decimal  # tokens × price / 1M, not rounded


@dataclass(frozen=True)
class Charge:
    classes: list[ClassCharge]
    exact_nano: Decimal  # Σ of the classes
    rounded_nano: int  # as money.cost_nano rounds it: half up, once, to the nano-USD


def charge_of(row, version: PriceVersion) -> Charge:
    """How a row's charge is computed from the price version it names (money.cost_nano's steps)."""
    prices = pricing.resolve(version)
    tokens = {usage.field: getattr(row, usage.column) for usage in USAGE_CLASSES}
    classes = [ClassCharge(usage.label, tokens[usage.field], prices[usage.price],
                           Decimal(tokens[usage.field] * prices[usage.price]) / money.TOKENS_PER_PRICE_UNIT)
               for usage in USAGE_CLASSES]
    return Charge(classes, sum((c.cost_nano for c in classes), Decimal(0)), money.cost_nano(tokens, prices))


@console.get("/logs/<request_id>")
@login_required
def request_detail(request_id: str):
    session = read_session()
    row = session.execute(usage_log.UsageQuery(session, g.account.id, usage_log.UsageFilters(request_id=request_id))
                          .rows()).first()
    if row is None:
        abort(404)
    version = session.get(PriceVersion, row.price_version_id) if row.price_version_id else None
    ledger_row = None
    if row.transaction_id is not None:
        ledger_row = session.execute(wallet_history.wallet_entries(g.account.id)
                                     .where(LedgerTransaction.id == row.transaction_id)).first()
    return render_template("console/request.html", nav="logs", row=row,
                           key=account_keys(session, g.account.id).get(row.key_id),
                           charge=charge_of(row, version) if version else None, ledger_row=ledger_row)
