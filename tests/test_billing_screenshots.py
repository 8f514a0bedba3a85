"""The Billing pages in real Chromium, on a small and a large screen: the console's Billing page of
an account with card payments over two months, a refund (so a credit note), usage and a billing
profile saved through the form; a profile refused at its field; Settings with the time zone and
the low-balance alert; the admin's billing page of the account and its refund form offering the
"sent back by hand" box for a USDT deposit. The PDF link downloads the invoice. Screenshots in
var/screenshots/ (docs/screenshots/console-billing.png is the README's)."""
from __future__ import annotations

import shutil
import uuid
from datetime import timedelta

import pytest
from browser import screenshot
from console_client import settings_of, signed_in_client
from harness import REPO
from sqlalchemy import update
from test_admin_journey import form_with, sign_in_admin
from test_console_screenshots import _signed_in

from control_plane import db
from control_plane.accounts import accounts
from control_plane.billing import invoices, ledger, refunds
from control_plane.deposits import ledger as deposit_ledger
from control_plane.deposits import tokens
from control_plane.models import LedgerTransaction, utcnow
from control_plane.money import usd_to_nano

README_SHOT = REPO / "docs" / "screenshots" / "console-billing.png"


def _payments(gateway, email: str, tag: str) -> int:
    """Two card top-ups (the first 40 days ago), $5 of the second refunded, a USDT deposit on TRON,
    invoices issued; the account's id."""
    settings = settings_of(gateway)
    with db.session_scope(settings) as session:
        account_id = accounts.require_by_email(session, email).id
        posted = [transaction.id for usd, event in (("40", "old"), ("25", "new"))
                  for transaction in deposit_ledger.credit_topup(
                      session, settings, account_id, usd_to_nano(usd), f"payment:evt_{tag}_{event}", "Card top-up")]
        session.execute(update(LedgerTransaction).where(LedgerTransaction.id == posted[0])
                        .values(created_at=utcnow() - timedelta(days=40)))
        deposit = deposit_ledger.record_deposit(
            session, chain="tron", tx_hash=tag.ljust(64, "c"), log_index=0, account_id=account_id,
            token_contract=next(token.contract for token in tokens.USDT if token.chain == "tron"), amount=30_000_000, block_number=77_000_001,
            block_hash="d" * 64, status="confirmed")
        posted += [transaction.id for transaction in deposit_ledger.credit_deposit(session, settings, deposit)]
    assert deposit_ledger.publish(settings, posted)
    with db.read_session(settings) as session:
        second = ledger.find(session, f"payment:evt_{tag}_new").id
    refunds.refund(settings, account_id, second, usd_to_nano("5"), "Top-up made twice by mistake", 0)
    with db.session_scope(settings) as session:
        invoices.issue_pending(session, settings)
    return account_id


def _requests(gateway, email: str) -> None:
    key = gateway.create_key(email, None, "--name", "web app")
    for number in range(6):
        gateway.chat(key, {"model": "sandbox-chat", "messages": [{"role": "user", "content": f"Question {number}"}]})
    gateway.wait_drained()


def _no_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


@pytest.mark.usefixtures("database_independent")
def test_the_billing_pages_on_a_small_and_a_large_screen(page, screen, gateway, mail_server):
    tag = uuid.uuid4().hex[:10]
    errors = _no_errors(page)
    customer = signed_in_client(gateway, mail_server)
    account_id = _payments(gateway, customer.email, tag)
    _requests(gateway, customer.email)
    _signed_in(page, gateway, customer)

    page.goto(f"{gateway.url}/console/billing")
    page.get_by_label("Legal name").fill("Example Trading GmbH")
    page.get_by_label("Address").fill("Hauptstraße 1\n10115 Berlin")
    page.get_by_label("Country").fill("XX")
    page.get_by_label("Tax id").fill("DE123456789")
    page.get_by_role("button", name="Save billing profile").click()
    assert "Give the country's two-letter ISO 3166 code" in page.locator(".field .error").inner_text()
    page.locator("#profile").scroll_into_view_if_needed()
    screenshot(page, "console-billing-profile-refused", screen)
    page.get_by_label("Country").fill("DE")
    page.get_by_role("button", name="Save billing profile").click()
    page.wait_for_url(f"{gateway.url}/console/billing")
    assert "Your billing profile is saved." in page.get_by_role("status").inner_text()

    rows = page.get_by_role("table", name="Invoices and credit notes, newest first").locator("tbody tr")
    assert rows.count() == 4  # three payments and a credit note
    assert page.get_by_role("table", name="Statements by month, newest first").locator("tbody tr").count() >= 2
    shot = screenshot(page, "console-billing", screen)
    if screen == "large":
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_SHOT)

    with page.expect_download() as download:
        rows.first.get_by_role("link", name="Download PDF").click()
    assert download.value.suggested_filename.endswith(".pdf")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download usage CSV").click()
    assert download.value.suggested_filename.startswith("tollgate-usage-")

    page.goto(f"{gateway.url}/console/settings")
    page.get_by_role("combobox", name="Time zone").select_option("Europe/Berlin")
    page.get_by_role("button", name="Save time zone").click()
    page.get_by_label("Mail me when my balance falls below (USD)").fill("0")
    page.get_by_role("button", name="Save alert").click()
    assert "Give an amount above $0" in page.locator(".field .error").inner_text()
    screenshot(page, "console-settings-billing", screen)
    page.get_by_label("Mail me when my balance falls below (USD)").fill("5")
    page.get_by_role("button", name="Save alert").click()
    assert "falls below $5.00" in page.get_by_role("status").inner_text()

    page.context.clear_cookies()
    sign_in_admin(page, gateway, f"billing-{screen}")
    page.goto(f"{gateway.url}/admin/accounts/{account_id}")
    refund_form = form_with(page, "Refund payment")
    assert refund_form.get_by_label("I have sent the USDT back by hand").count() == 1
    page.locator("#billing").scroll_into_view_if_needed()
    screenshot(page, "admin-account-billing-summary", screen)
    page.get_by_role("link", name="Billing profile, invoices and statements").click()
    assert "Example Trading GmbH" in page.get_by_label("Legal name").input_value()
    screenshot(page, "admin-account-billing", screen)
    assert errors == []
