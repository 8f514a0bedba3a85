"""Billing /console/billing: the billing profile invoices are made out to, the invoices and credit
notes as PDF, statements by month (or of any range of days) as PDF and CSV, and a statement's
usage as CSV with one row per request.

Documents are billing/documents.py's, their figures billing/statements.py's and the invoices
billing/invoices.py's; this module only finds them for the signed-in customer (another's invoice
is a 404, as one that does not exist) and serves them as downloads. Dates are shown in the
account's time zone (Settings), which the page names. The admin's billing page of an account
(admin/accounts.py) uses the helpers below for any account.
"""
from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from flask import Response, abort, flash, g, redirect, render_template, request, stream_with_context
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import DateField, EmailField, Form, StringField, TextAreaField
from wtforms.validators import InputRequired, ValidationError

from ..api import context
from ..billing import documents, invoices, profiles, statements
from ..models import Account, BillingProfile, Invoice
from . import console
from .sessions import login_required, read_session, write_scope

MONTHS_PAGE = 12
KINDS = {"invoice": "Invoice", "credit_note": "Credit note"}
# A statement's range starts at the earliest in 2000 and ends at most a year past today.
EARLIEST = date(2000, 1, 1)
LATEST_AHEAD = timedelta(days=366)


class BillingProfileForm(FlaskForm):
    legal_name = StringField("Legal name", description="The person or company invoices are made out to.")
    address = TextAreaField("Address", description="As it should appear on invoices, one line per line.")
    country = StringField("Country", description="Two letters (ISO 3166), e.g. DE. Decides the tax rate.")
    tax_id = StringField("Tax id", description="A VAT or other tax number, if you have one.")
    invoice_email = EmailField("Invoice e-mail", description="Where invoices go. Empty: your account's e-mail.")


class StatementRangeForm(Form):
    """The first and last day of a statement (a GET form: nothing changes, no CSRF token)."""

    start = DateField("From", validators=[InputRequired("Give the first day, e.g. 2026-01-01.")])
    end = DateField("To", validators=[InputRequired("Give the last day, e.g. 2026-01-31.")])

    def validate_start(self, field):
        if field.data and field.data < EARLIEST:
            raise ValidationError(f"Give a day from {EARLIEST.isoformat()} on.")

    def validate_end(self, field):
        if field.data is None:
            return
        if self.start.data and field.data < self.start.data:
            raise ValidationError("The last day must not be before the first.")
        if field.data > datetime.now(UTC).date() + LATEST_AHEAD:
            raise ValidationError("Give a day at most a year from today.")


@dataclass(frozen=True)
class InvoiceRow:
    invoice: Invoice
    kind: str  # as the page names it
    issued: str  # the issue date in the account's zone

    @property
    def filename(self) -> str:
        return f"{self.invoice.number}.pdf"


@dataclass(frozen=True)
class MonthRow:
    label: str  # "March 2026"
    start: date
    end: date
    opening_nano: int
    closing_nano: int

    @property
    def query(self) -> str:
        return f"start={self.start.isoformat()}&end={self.end.isoformat()}"


@dataclass(frozen=True)
class Months:
    """A page of statement months, newest first, and the month to continue before (older)."""

    rows: list[MonthRow]
    older: str | None  # "YYYY-MM"


# -- what the console and the admin pages share ------------------------------------------------


def profile_form(profile: BillingProfile | None, prefix: str = "") -> BillingProfileForm:
    form = BillingProfileForm(formdata=None, prefix=prefix)
    if profile is not None:
        for name in ("legal_name", "address", "country", "tax_id", "invoice_email"):
            getattr(form, name).data = getattr(profile, name)
    return form


def save_profile(form: BillingProfileForm, account_id: int) -> bool:
    """Saves the sent form as the account's billing profile; False (the refusal at its field)
    when it holds a mistake."""
    try:
        with write_scope() as session:
            profiles.save(session, account_id, legal_name=form.legal_name.data or "",
                          address=form.address.data or "", country=form.country.data or "",
                          tax_id=form.tax_id.data or "", invoice_email=form.invoice_email.data or "")
    except profiles.ProfileError as exc:
        field = getattr(form, exc.field, None) or form.legal_name
        field.errors = [*field.errors, f"{exc}."]
        # The form is at the page's foot: the top of the page says where to look.
        flash(f"The billing profile was not saved: see {field.label.text}.", "error")
        return False
    return True


def invoice_rows(session: Session, account: Account) -> list[InvoiceRow]:
    zone = statements.zone_of(account)
    return [InvoiceRow(invoice, KINDS[invoice.kind], invoice.issued_at.astimezone(zone).date().isoformat())
            for invoice in invoices.for_account(session, account.id)]


def months(session: Session, account: Account, before: str | None = None) -> Months:
    """MONTHS_PAGE statement months, newest first (those before the "YYYY-MM" `before`, if given),
    each with its opening and closing balance (Σ of the wallet before its first and after its last
    day, as its statement has them), all read in one query."""
    found = statements.months(session, account)
    if before:
        found = [(year, month) for year, month in found if f"{year:04d}-{month:02d}" < before]
    zone = statements.zone_of(account)
    days = [statements.month_range(year, month) for year, month in found[:MONTHS_PAGE]]
    moments = [moment for start, end in days for moment in statements.bounds(zone, start, end)]
    balances = statements.balances_before(session, account, moments) if moments else []  # none before `before`
    rows = [MonthRow(f"{calendar.month_name[start.month]} {start.year}", start, end, *balances[2 * n:2 * n + 2])
            for n, (start, end) in enumerate(days)]
    older = f"{found[MONTHS_PAGE - 1][0]:04d}-{found[MONTHS_PAGE - 1][1]:02d}" if len(found) > MONTHS_PAGE else None
    return Months(rows, older)


def range_form(account: Account, sent: bool = False) -> StatementRangeForm:
    """The statement range form: the request's query if sent, else this month so far."""
    if sent:
        form = StatementRangeForm(request.args)
        form.validate()
        return form
    today = datetime.now(statements.zone_of(account)).date()
    return StatementRangeForm(start=today.replace(day=1), end=today)


def invoice_download(account: Account, number: str) -> Response:
    """The PDF of the account's invoice or credit note of that number; 404 when it has none."""
    invoice = invoices.by_number(read_session(), number)
    if invoice is None or invoice.account_id != account.id:
        abort(404)
    return _download(documents.invoice_pdf(context.settings(), invoice), "application/pdf", f"{invoice.number}.pdf")


def statement_download(account: Account, what: str, page: Callable[..., tuple]) -> Response | tuple:
    """The account's statement (what: "pdf", "csv") or its usage ("usage") of the request's range;
    `page(status, range_form=…)` when the range holds a mistake."""
    form = range_form(account, sent=True)
    if form.errors:
        return page(400, range_form=form)
    start, end = form.start.data, form.end.data
    session, days = read_session(), f"{start.isoformat()}-to-{end.isoformat()}"
    if what == "usage":
        return _download(stream_with_context(documents.usage_csv(session, account, start, end)), "text/csv",
                         f"tollgate-usage-{days}.csv")
    statement = statements.statement(session, account, start, end)
    if what == "pdf":
        return _download(documents.statement_pdf(context.settings(), account, statement), "application/pdf",
                         f"tollgate-statement-{days}.pdf")
    return _download(documents.statement_csv(statement), "text/csv", f"tollgate-statement-{days}.csv")


def _download(body, mimetype: str, filename: str) -> Response:
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                                      "Cache-Control": "no-store"})


# -- the console's pages ---------------------------------------------------------------------------


def _page(status: int = 200, **forms):
    """The billing page, with the forms given (those sent with mistakes) and new ones."""
    session, account = read_session(), g.account
    forms = {"profile_form": profile_form(profiles.get(session, account.id)), "range_form": range_form(account),
             **forms}
    return render_template("console/billing.html", nav="billing", zone=account.time_zone,
                           invoices=invoice_rows(session, account),
                           months=months(session, account, request.args.get("before")),
                           base="/console/billing", **forms), status


@console.get("/billing")
@login_required
def billing_page():
    return _page()


@console.post("/billing/profile")
@login_required
def billing_profile():
    form = BillingProfileForm()
    if not (form.validate_on_submit() and save_profile(form, g.account.id)):
        return _page(400, profile_form=form)
    flash("Your billing profile is saved. Invoices issued from now on are made out to it; those issued already "
          "keep the details they were issued with.", "success")
    return redirect("/console/billing", code=303)


@console.get("/billing/invoices/<number>.pdf")
@login_required
def billing_invoice_pdf(number: str):
    return invoice_download(g.account, number)


@console.get("/billing/statement.pdf")
@login_required
def billing_statement_pdf():
    return statement_download(g.account, "pdf", _page)


@console.get("/billing/statement.csv")
@login_required
def billing_statement_csv():
    return statement_download(g.account, "csv", _page)


@console.get("/billing/usage.csv")
@login_required
def billing_usage_csv():
    return statement_download(g.account, "usage", _page)
