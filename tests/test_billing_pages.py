"""The console's Billing page and Settings additions, and the admin's billing view of an account,
in-process: the billing profile saved or refused at its field, invoices and credit notes as PDF
for their owner only (another's is a 404), statements by month and by range as PDF and CSV with
their exact figures, the usage CSV one row per request, the time zone and the low-balance alert,
and the refund form's "sent back by hand" box for USDT payments."""
from __future__ import annotations

import calendar
import csv
import html
import io
import re
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from admin_client import signed_in_admin
from console_client import PASSWORD, ConsoleClient
from helpers import drain_all, usage_entry, usage_record
from sqlalchemy import select, update

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import passwords
from control_plane.app import create_app
from control_plane.billing import invoices, profiles
from control_plane.deposits import ledger as deposit_ledger
from control_plane.hot import redis_keys
from control_plane.models import Account, AuditEntry, Invoice, LedgerTransaction, utcnow
from control_plane.money import usd_to_nano

TRON_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
PROFILE = {"legal_name": "Alice Example GmbH", "address": "Hauptstraße 1\n10115 Berlin", "country": "de",
           "tax_id": "DE123456789", "invoice_email": "billing@alice.example"}


@pytest.fixture
def admin(app, settings):
    client = signed_in_admin(settings, app=app)
    yield client
    client.close()


def signed_in(app, settings, customer) -> ConsoleClient:
    """A console client signed in as the conftest customer (given a password here)."""
    with db.session_scope(settings) as session:
        account = session.get(Account, customer.account.id)
        account.password_hash, account.email_verified_at = passwords.hash_password(PASSWORD), utcnow()
        email = account.email
    client = ConsoleClient(app=app)
    client.log_in(email, PASSWORD)
    return client


def card_payment(settings, account_id: int, usd: str, event: str) -> Invoice:
    """A card checkout of that many USD credited to the account, and its invoice."""
    with db.session_scope(settings) as session:
        posted = [transaction.id for transaction in deposit_ledger.credit_topup(
            session, settings, account_id, usd_to_nano(usd), f"payment:{event}", "Card top-up")]
    assert deposit_ledger.publish(settings, posted)  # as the webhook does once it committed the credit
    return issued(settings, f"payment:{event}")


def issued(settings, key: str) -> Invoice:
    with db.session_scope(settings) as session:
        invoices.issue_pending(session, settings)
    with db.read_session(settings) as session:
        from control_plane.billing import ledger

        return session.scalar(select(Invoice).where(Invoice.transaction_id == ledger.find(session, key).id))


def errors_of(page_html: str) -> dict[str, list[str]]:
    """Each field's errors on a page: {field id: [message, …]}."""
    found: dict[str, list[str]] = {}
    for block in re.findall(r'<div class="field[^"]*">(.*?)</div>', page_html, re.DOTALL):
        field_id = re.search(r'id="([^"]+)"', block)
        for message in re.findall(r'<span class="error">([^<]+)</span>', block):
            found.setdefault(field_id.group(1) if field_id else "", []).append(html.unescape(message))
    return found


def pdf_text(body: bytes) -> str:
    return subprocess.run(["pdftotext", "-layout", "-", "-"], input=body, capture_output=True, check=True).stdout.decode()


def this_month() -> tuple[str, str]:
    """The first day of this month and today (UTC, the customer's zone unless a test sets one)."""
    today = datetime.now(UTC).date()
    return today.replace(day=1).isoformat(), today.isoformat()


def assert_download(response, content_type: str, filename: str) -> None:
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"].startswith(content_type)
    assert response.headers["content-disposition"] == f'attachment; filename="{filename}"'


# -- the billing profile ------------------------------------------------------------------------------


def test_the_billing_page_has_labelled_forms_and_is_in_the_nav(app, settings, customer):
    client = signed_in(app, settings, customer)
    page = client.get("/console/billing").text
    assert '<a href="/console/billing" aria-current="page">Billing</a>' in page
    for label in ('<label for="legal_name">Legal name</label>', '<label for="address">Address</label>',
                  '<label for="country">Country</label>', '<label for="tax_id">Tax id</label>',
                  '<label for="invoice_email">Invoice e-mail</label>', '<label for="start">From</label>',
                  '<label for="end">To</label>', '<button type="submit">Save billing profile</button>',
                  '<button type="submit">Download statement PDF</button>'):
        assert label in page
    assert "Dates are in your time zone,\n<strong>UTC</strong>" in page


def test_the_profile_is_saved_and_shown_again(app, settings, customer):
    client = signed_in(app, settings, customer)
    client.get("/console/billing")
    saved = client.post_form("/console/billing/profile", PROFILE)
    assert saved.status_code == 200 and saved.url.path == "/console/billing"
    assert "Your billing profile is saved." in saved.text
    assert 'value="Alice Example GmbH"' in saved.text and "Hauptstraße 1\n10115 Berlin</textarea>" in saved.text
    with db.read_session(settings) as session:
        profile = profiles.get(session, customer.account.id)
        assert (profile.legal_name, profile.address, profile.country, profile.tax_id, profile.invoice_email) == (
            "Alice Example GmbH", "Hauptstraße 1\n10115 Berlin", "DE", "DE123456789", "billing@alice.example")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("country", "XX", "Give the country's two-letter ISO 3166 code, e.g. DE, or leave it empty."),
    ("invoice_email", "not an address", "Give an e-mail address such as billing@example.com"),
    ("legal_name", "x" * 201, "The legal name is at most 200 characters."),
])
def test_a_profile_mistake_is_shown_beside_its_field_and_nothing_is_saved(app, settings, customer, field, value,
                                                                          message):
    client = signed_in(app, settings, customer)
    client.get("/console/billing")
    refused = client.post_form("/console/billing/profile", {**PROFILE, field: value})
    assert refused.status_code == 400 and "The billing profile was not saved: see " in refused.text
    assert any(message in error for error in errors_of(refused.text)[field]), errors_of(refused.text)
    assert 'value="DE123456789"' in refused.text  # the other fields keep what was sent
    with db.read_session(settings) as session:
        assert profiles.get(session, customer.account.id) is None


# -- invoices and credit notes -----------------------------------------------------------------------


def test_an_invoice_is_listed_and_downloads_as_its_pdf(app, settings, customer):
    client = signed_in(app, settings, customer)
    invoice = card_payment(settings, customer.account.id, "25", "evt_pages_1")
    page = client.get("/console/billing").text
    row = re.search(rf'<td class="mono number">{invoice.number}</td>(.*?)</tr>', page, re.DOTALL).group(1)
    assert invoice.issued_at.date().isoformat() in row and "Invoice" in row and "$25.00 USD" in row
    assert f'aria-label="Download PDF of invoice {invoice.number}">Download PDF</a>' in row
    pdf = client.get(f"/console/billing/invoices/{invoice.number}.pdf")
    assert_download(pdf, "application/pdf", f"{invoice.number}.pdf")
    text = pdf_text(pdf.content)
    assert invoice.number in text and "25.00" in text


def test_another_customers_invoice_is_not_found(app, settings, make_customer):
    alice, bob = make_customer("alice@example.com", None), make_customer("bob@example.com", None)
    theirs = card_payment(settings, bob.account.id, "12", "evt_pages_bob")
    client = signed_in(app, settings, alice)
    assert theirs.number not in client.get("/console/billing").text
    for number in (theirs.number, "TG-1999-000001", "%2e%2e"):
        response = client.get(f"/console/billing/invoices/{number}.pdf")
        assert response.status_code == 404 and "application/pdf" not in response.headers["content-type"]


def test_a_refund_lists_its_credit_note(app, admin, settings, customer):
    client = signed_in(app, settings, customer)
    invoice = card_payment(settings, customer.account.id, "25", "evt_pages_refund")
    with db.read_session(settings) as session:
        payment_id = invoice.transaction_id
    admin.get(f"/admin/accounts/{customer.account.id}")
    refunded = admin.post_form(f"/admin/accounts/{customer.account.id}/refunds", {
        "refund-payment": f"{payment_id}:0", "refund-amount": "5", "refund-reason": "asked"})
    assert refunded.status_code == 200 and "Refunded $5.00" in refunded.text, refunded.text
    with db.session_scope(settings) as session:
        invoices.issue_pending(session, settings)
    with db.read_session(settings) as session:
        [note] = [row for row in invoices.for_account(session, customer.account.id) if row.kind == "credit_note"]
    page = client.get("/console/billing").text
    row = re.search(rf'<td class="mono number">{note.number}</td>(.*?)</tr>', page, re.DOTALL).group(1)
    assert "Credit note" in row and "-$5.00 USD" in row
    pdf = client.get(f"/console/billing/invoices/{note.number}.pdf")
    assert_download(pdf, "application/pdf", f"{note.number}.pdf")
    assert invoice.number in pdf_text(pdf.content)


# -- statements ---------------------------------------------------------------------------------------


@pytest.fixture
def used(settings, customer, price_version, drain, redis_client):
    """The customer's $10 deposit and two requests of $0.000525 each, recorded."""
    stream = redis_keys.usage_stream(customer.shard(settings))
    for request_id in ("req-pages-1", "req-pages-2"):
        redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, request_id)))
    assert drain_all(drain) == 2
    return customer


def test_this_months_statement_has_its_opening_and_closing_balance(app, settings, used):
    client = signed_in(app, settings, used)
    page = client.get("/console/billing").text
    month = datetime.now(UTC).strftime("%B %Y")
    row = re.search(rf'<td class="month">{month}</td>(.*?)</tr>', page, re.DOTALL).group(1)
    assert re.findall(r'<td class="num" data-label="[^"]+">([^<]+)</td>', row) == ["$0.00", "$9.99895"]
    today = datetime.now(UTC).date()
    start, end = today.replace(day=1), today.replace(day=calendar.monthrange(today.year, today.month)[1])
    for label, path in (("Statement PDF", "statement.pdf"), ("Statement CSV", "statement.csv"),
                        ("Usage CSV (one row per request)", "usage.csv")):
        assert f'<a href="/console/billing/{path}?start={start}&amp;end={end}" aria-label=' in row
        assert f">{label}</a>" in row


def test_the_statement_downloads_carry_the_exact_figures(app, settings, used):
    client = signed_in(app, settings, used)
    start, end = this_month()
    query = f"start={start}&end={end}"
    days = f"{start}-to-{end}"

    pdf = client.get(f"/console/billing/statement.pdf?{query}")
    assert_download(pdf, "application/pdf", f"tollgate-statement-{days}.pdf")
    text = pdf_text(pdf.content)
    assert "10.00" in text and "9.99895" in text and "test-chat" in text

    statement = client.get(f"/console/billing/statement.csv?{query}")
    assert_download(statement, "text/csv", f"tollgate-statement-{days}.csv")
    rows = list(csv.reader(io.StringIO(statement.text)))
    assert rows[1][0] == "opening balance" and rows[1][-1] == "0"
    assert rows[-1][0] == "closing balance" and rows[-1][-1] == "9998950000"
    assert [row[3:7] for row in rows if row[0] == "usage by model"] == [["test-chat", "2", "-0.00105", "-1050000"]]

    usage = client.get(f"/console/billing/usage.csv?{query}")
    assert_download(usage, "text/csv", f"tollgate-usage-{days}.csv")
    usage_rows = list(csv.DictReader(io.StringIO(usage.text)))
    assert [row["request_id"] for row in usage_rows] == ["req-pages-1", "req-pages-2"]
    assert [row["cost_nano"] for row in usage_rows] == ["525000", "525000"]


@pytest.mark.parametrize(("query", "field", "message"), [
    ("start=2026-03-10&end=2026-03-01", "end", "The last day must not be before the first."),
    ("start=&end=2026-03-01", "start", "Give the first day, e.g. 2026-01-01."),
    ("start=2026-02-30&end=2026-03-01", "start", "Not a valid date value."),
    ("start=1999-12-31&end=2026-03-01", "start", "Give a day from 2000-01-01 on."),
    ("start=2026-01-01&end=9999-01-01", "end", "Give a day at most a year from today."),
])
def test_a_range_mistake_is_shown_beside_its_field(app, settings, customer, query, field, message):
    client = signed_in(app, settings, customer)
    for path in ("statement.pdf", "statement.csv", "usage.csv"):
        refused = client.get(f"/console/billing/{path}?{query}")
        assert refused.status_code == 400 and refused.headers["content-type"].startswith("text/html")
        assert message in errors_of(refused.text)[field], errors_of(refused.text)


# -- settings: time zone and low-balance alert -----------------------------------------------------------


def account_of(settings, account_id: int) -> Account:
    with db.read_session(settings) as session:
        return session.get(Account, account_id)


def test_the_time_zone_is_saved_and_names_the_billing_dates(app, settings, customer):
    client = signed_in(app, settings, customer)
    page = client.get("/console/settings").text
    assert '<label for="time_zone">Time zone</label>' in page and '<option selected value="UTC">UTC</option>' in page
    saved = client.post_form("/console/settings/time-zone", {"time_zone": "Asia/Singapore"})
    assert saved.status_code == 200 and "Your time zone is Asia/Singapore" in saved.text
    assert '<option selected value="Asia/Singapore">' in saved.text
    assert account_of(settings, customer.account.id).time_zone == "Asia/Singapore"
    billing = client.get("/console/billing").text
    assert "<strong>Asia/Singapore</strong>" in billing and "Dates are in Asia/Singapore." in billing


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "../../etc/passwd", "", "x" * 80])
def test_an_unknown_time_zone_is_refused(app, settings, customer, name):
    client = signed_in(app, settings, customer)
    client.get("/console/settings")
    refused = client.post_form("/console/settings/time-zone", {"time_zone": name})
    assert refused.status_code == 400
    assert errors_of(refused.text)["time_zone"] == ["Choose a time zone from the list."]
    assert account_of(settings, customer.account.id).time_zone == "UTC"


def test_the_low_balance_alert_is_saved_shown_and_turned_off(app, settings, customer):
    client = signed_in(app, settings, customer)
    client.get("/console/settings")
    saved = client.post_form("/console/settings/balance-alert", {"balance_alert": "5.25"})
    assert saved.status_code == 200 and "when your balance falls below $5.25." in saved.text
    assert 'value="5.25"' in saved.text
    assert account_of(settings, customer.account.id).balance_alert_nano == 5_250_000_000
    off = client.post_form("/console/settings/balance-alert", {"balance_alert": "  "})
    assert off.status_code == 200 and "The low-balance alert is off." in off.text
    assert account_of(settings, customer.account.id).balance_alert_nano is None


@pytest.mark.parametrize(("value", "message"), [
    ("five", "Give a USD amount such as 5.00, with at most 9 decimals."),
    ("0.0000000001", "Give a USD amount such as 5.00, with at most 9 decimals."),
    ("0", "Give an amount above $0 and at most $1000000.00, or leave it empty for no alert."),
    ("-3", "Give an amount above $0 and at most $1000000.00, or leave it empty for no alert."),
    ("1000000.000000001", "Give an amount above $0 and at most $1000000.00, or leave it empty for no alert."),
])
def test_a_bad_alert_threshold_is_refused_beside_its_field(app, settings, customer, value, message):
    client = signed_in(app, settings, customer)
    client.get("/console/settings")
    refused = client.post_form("/console/settings/balance-alert", {"balance_alert": value})
    assert refused.status_code == 400 and errors_of(refused.text)["balance_alert"] == [message]
    assert account_of(settings, customer.account.id).balance_alert_nano is None


# -- the admin's billing view -------------------------------------------------------------------------


def test_an_admin_views_and_edits_a_profile_audited(admin, settings, customer):
    account_id = customer.account.id
    detail = admin.get(f"/admin/accounts/{account_id}").text
    assert "No billing profile: invoices are made out to alice@example.com." in detail
    assert f'<a href="/admin/accounts/{account_id}/billing">Billing profile, invoices and statements</a>' in detail
    admin.get(f"/admin/accounts/{account_id}/billing")
    fields = {f"profile-{name}": value for name, value in PROFILE.items()}
    refused = admin.post_form(f"/admin/accounts/{account_id}/billing/profile", {**fields, "profile-country": "EU"})
    assert refused.status_code == 400 and "profile-country" in errors_of(refused.text)
    admin.get(f"/admin/accounts/{account_id}/billing")
    saved = admin.post_form(f"/admin/accounts/{account_id}/billing/profile", fields)
    assert saved.status_code == 200 and "Billing profile saved" in saved.text
    detail = admin.get(f"/admin/accounts/{account_id}").text
    assert "Alice Example GmbH" in detail and "DE123456789" in detail
    with db.read_session(settings) as session:
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.entity == "billing_profile")))
    assert [entry.actor for entry in entries] == [f"admin {admin.email}"]


def test_an_admin_downloads_any_accounts_invoices_and_statements(admin, settings, customer):
    account_id = customer.account.id
    invoice = card_payment(settings, account_id, "25", "evt_pages_admin")
    page = admin.get(f"/admin/accounts/{account_id}/billing").text
    assert invoice.number in page and f'href="/admin/accounts/{account_id}/billing/invoices/{invoice.number}.pdf"' in page
    pdf = admin.get(f"/admin/accounts/{account_id}/billing/invoices/{invoice.number}.pdf")
    assert_download(pdf, "application/pdf", f"{invoice.number}.pdf")
    assert invoice.number in pdf_text(pdf.content)
    # An invoice of another account is not found under this one.
    assert admin.get(f"/admin/accounts/{account_id + 1}/billing/invoices/{invoice.number}.pdf").status_code == 404
    start, end = this_month()
    statement = admin.get(f"/admin/accounts/{account_id}/billing/statement.csv?start={start}&end={end}")
    assert_download(statement, "text/csv", f"tollgate-statement-{start}-to-{end}.csv")
    assert list(csv.reader(io.StringIO(statement.text)))[-1][-1] == "35000000000"  # $10 deposit + $25 card


def usdt_deposit(settings, account_id: int) -> int:
    """25 USDT credited to the account on TRON; the payment's transaction id."""
    with db.session_scope(settings) as session:
        deposit = deposit_ledger.record_deposit(
            session, chain="tron", tx_hash="cd" * 32, log_index=1, account_id=account_id, token_contract=TRON_USDT,
            amount=25_000_000, block_number=100, block_hash="b" * 64, status="confirmed")
        posted = [transaction.id for transaction in deposit_ledger.credit_deposit(session, settings, deposit)]
    assert deposit_ledger.publish(settings, posted)
    return posted[0]


def test_the_sent_back_box_is_offered_for_usdt_payments_only(admin, settings, make_customer):
    card_only = make_customer("card@example.com", None)
    card_payment(settings, card_only.account.id, "10", "evt_pages_box")
    assert "I have sent the USDT back by hand" not in admin.get(f"/admin/accounts/{card_only.account.id}").text
    chain = make_customer("chain@example.com", None)
    usdt_deposit(settings, chain.account.id)
    page = admin.get(f"/admin/accounts/{chain.account.id}").text
    assert '<label for="refund-sent_back">I have sent the USDT back by hand</label>' in page


def test_a_usdt_refund_needs_the_box_ticked(admin, settings, make_customer):
    chain = make_customer("chain@example.com", None)
    payment_id = usdt_deposit(settings, chain.account.id)
    fields = {"refund-payment": f"{payment_id}:0", "refund-amount": "25", "refund-reason": "sent to a wrong address"}
    admin.get(f"/admin/accounts/{chain.account.id}")
    refused = admin.post_form(f"/admin/accounts/{chain.account.id}/refunds", fields)
    assert refused.status_code == 400 and errors_of(refused.text), refused.text
    admin.get(f"/admin/accounts/{chain.account.id}")
    done = admin.post_form(f"/admin/accounts/{chain.account.id}/refunds", {**fields, "refund-sent_back": "y"})
    assert done.status_code == 200 and f"Refunded $25.00 of payment #{payment_id}" in done.text, done.text


def test_a_card_payment_past_the_refund_window_is_refused_beside_the_form(tollgate_env, make_customer):
    settings = settings_module.load({**tollgate_env, "TOLLGATE_REFUND_WINDOW_HOURS": "24"})
    admin = signed_in_admin(settings, app=create_app({"TESTING": True, "TOLLGATE_SETTINGS": settings}))
    alice = make_customer("alice@example.com", None)
    old, new = (card_payment(settings, alice.account.id, "10", event) for event in ("evt_pages_old", "evt_pages_new"))
    with db.session_scope(settings) as session:
        session.execute(update(LedgerTransaction).where(LedgerTransaction.id == old.transaction_id)
                        .values(created_at=utcnow() - timedelta(hours=25)))
    page = admin.get(f"/admin/accounts/{alice.account.id}").text
    assert "A card payment is refundable for 24 hours after it was\n      paid." in page
    options = dict(re.findall(r'<option value="\d+:\d+">#(\d+) [^<]*\(([^)]+)\)</option>', page))
    assert options[str(old.transaction_id)] == "past the refund window"
    assert options[str(new.transaction_id)].startswith("until ")
    refused = admin.post_form(f"/admin/accounts/{alice.account.id}/refunds", {
        "refund-payment": f"{old.transaction_id}:0", "refund-amount": "10", "refund-reason": "asked"})
    assert refused.status_code == 400
    assert errors_of(refused.text)["refund-payment"] == [
        (f"Payment #{old.transaction_id} is past the refund window: card top-ups are refundable for 24 hours after "
        "payment.")]
    admin.get(f"/admin/accounts/{alice.account.id}")
    done = admin.post_form(f"/admin/accounts/{alice.account.id}/refunds", {
        "refund-payment": f"{new.transaction_id}:0", "refund-amount": "10", "refund-reason": "asked"})
    assert done.status_code == 200 and f"Refunded $10.00 of payment #{new.transaction_id}" in done.text
    admin.close()


def test_statement_months_are_paged_twelve_at_a_time(app, settings, customer):
    now = datetime.now(UTC)
    first_moved = now - timedelta(days=430)
    with db.session_scope(settings) as session:
        session.execute(update(LedgerTransaction).where(LedgerTransaction.account_id == customer.account.id)
                        .values(created_at=first_moved))
    every = (now.year - first_moved.year) * 12 + now.month - first_moved.month + 1  # 15 or 16 months
    client = signed_in(app, settings, customer)
    first = client.get("/console/billing").text
    months = re.findall(r'<td class="month">([^<]+)</td>', first)
    assert len(months) == 12 and months[0] == now.strftime("%B %Y")
    older = re.search(r'<a href="\?before=(\d{4}-\d{2})#statements" rel="next">Older months →</a>', first).group(1)
    second = client.get(f"/console/billing?before={older}").text
    rest = re.findall(r'<td class="month">([^<]+)</td>', second)
    assert len(rest) == every - 12 and rest[-1] == first_moved.strftime("%B %Y") and "Older months" not in second
    balances = re.findall(r'<td class="num" data-label="[^"]+">([^<]+)</td>', second)
    assert balances[:2] == ["$10.00", "$10.00"] and balances[-2:] == ["$0.00", "$10.00"]
