"""Every admin page the journey (tests/test_admin_journey.py) does not show, with something on it,
saved as a screenshot on a small and a large screen in real Chromium: a second sign-in (the code
page), the accounts list and a ledger, a provider's page, the models list, the deposits (one of
each state the watchers leave), held price changes and the overview after a reconcile run."""
from __future__ import annotations

import json
import time
import uuid

import pyotp
import pytest
from browser import screenshot
from console_client import PASSWORD, new_email
from sqlalchemy.orm import Session
from test_admin_journey import form_with, sign_in_admin

from control_plane import db
from control_plane.accounts import accounts
from control_plane.deposits import tokens
from control_plane.deposits.ledger import record_deposit


def _a_deposit(gateway, email: str, tag: str) -> None:
    """A USDT deposit to the account on Polygon, seen in a block not final yet (as the watcher
    records it), 25 USDT."""
    with Session(db.engine_for(gateway.database_url)) as session, session.begin():
        account = accounts.require_by_email(session, email)
        record_deposit(session, chain="polygon", tx_hash="0x" + tag.ljust(64, "a"), log_index=3,
                       account_id=account.id, token_contract=tokens.USDT[-1].contract, amount=25_000_000,
                       block_number=64_000_123, block_hash="0x" + "b" * 64)


def _a_held_price(gateway, tmp_path, tag: str) -> str:
    """A model whose route follows a price list that triples its input price: held."""
    model = f"shots-{tag}"
    gateway.cli("model", "add", model, "--provider", "sandbox", "--upstream-model", "sandbox-chat", "--input", "0.15",
                "--output", "0.60", "--price-source-id", model)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({model: {"input_cost_per_token": "4.5e-07", "output_cost_per_token": "6e-07"}}))
    gateway.cli("prices", "sync", "--source", str(prices), "--format", "litellm", "--apply")
    return model


@pytest.mark.usefixtures("database_independent")
def test_every_other_admin_page_on_a_small_and_a_large_screen(page, screen, gateway, tmp_path):
    tag = uuid.uuid4().hex[:8]
    email, secret = sign_in_admin(page, gateway, screen)
    customer = new_email()
    gateway.cli("account", "create", customer)
    gateway.cli("credit", customer, "12.50", "--reason", "Invoice 2026-117 paid by bank transfer")
    _a_deposit(gateway, customer, tag)
    model = _a_held_price(gateway, tmp_path, tag)

    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{gateway.url}/admin/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{gateway.url}/admin/code")
    # The next step's code: the enrolment used this one's, and a code works once.
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).at(time.time() + 30))
    screenshot(page, "admin-code", screen)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{gateway.url}/admin/")

    # While it runs, the button is disabled and the page says what is going on (the submit is held
    # back here to look at that moment).
    page.evaluate("document.querySelector('form[action=\"/admin/reconcile\"]')"
                  ".addEventListener('submit', (event) => event.preventDefault())")
    page.get_by_role("button", name="Run reconcile now").click()
    page.wait_for_function("document.querySelector('form[action=\"/admin/reconcile\"] button').disabled")
    assert "Reconciling every account" in page.get_by_role("status").inner_text()
    page.reload()
    page.get_by_role("button", name="Run reconcile now").click()
    assert "never run" not in page.content()
    screenshot(page, "admin-overview-reconciled", screen)

    page.goto(f"{gateway.url}/admin/accounts")
    assert customer in page.content()
    screenshot(page, "admin-accounts", screen)
    page.get_by_label("Email or id").fill(customer)
    page.get_by_role("button", name="Search accounts").click()
    page.get_by_role("link", name=customer).click()
    page.get_by_role("link", name="Every ledger transaction of this account").click()
    assert "Invoice 2026-117" in page.content()
    screenshot(page, "admin-account-ledger", screen)

    page.goto(f"{gateway.url}/admin/providers/sandbox")
    assert form_with(page, "Save provider").count() == 1
    screenshot(page, "admin-provider", screen)
    page.goto(f"{gateway.url}/admin/models")
    assert model in page.content()
    screenshot(page, "admin-models", screen)

    page.goto(f"{gateway.url}/admin/deposits")
    assert "64000123" in page.content().replace(",", "") and "pending" in page.content()
    screenshot(page, "admin-deposits", screen)

    page.goto(f"{gateway.url}/admin/prices/held")
    assert model in page.content() and "$0.45" in page.content()
    screenshot(page, "admin-price-holds", screen)
