"""An admin's whole journey through the admin console in real Chromium, on a small and a large
screen: set the password from the link `tollgate admin create` prints, enrol TOTP with a code
computed from the secret the page shows, add a provider and test it, add a model with two
routes, credit a customer with a reason, see the audit rows with their values before and after,
suspend the account and see its key refused by the gateway. Each page is saved as a screenshot
(tests/browser.py)."""
from __future__ import annotations

import json
import re
import time
import uuid

import httpx
import pyotp
import pytest
from browser import screenshot
from console_client import PASSWORD, new_email

SET_PASSWORD_LINK = re.compile(r"https?://\S+(/console/set-password/\S+)")


def sign_in_admin(page, gateway, screen: str, email: str | None = None) -> tuple[str, str]:
    """A new admin (made with the CLI), its password set from the printed link, signed in with
    TOTP enrolled from the page's secret: (email, secret)."""
    email = email or new_email()
    printed = gateway.cli("admin", "create", email).stdout
    page.goto(gateway.url + SET_PASSWORD_LINK.search(printed).group(1))
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("Confirm new password").fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    page.goto(f"{gateway.url}/admin/")
    assert "/admin/login" in page.url
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    screenshot(page, "admin-login", screen)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{gateway.url}/admin/enrol")
    secret = page.locator("#totp-secret").inner_text().strip()
    assert page.locator("svg.qr").count() == 1
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).now())
    screenshot(page, "admin-enrol", screen)
    page.get_by_role("button", name="Confirm and sign in").click()
    codes = page.get_by_role("list", name="Recovery codes").locator("li")
    assert codes.count() == 10
    screenshot(page, "admin-recovery-codes", screen)
    page.get_by_role("link", name="I stored them").click()
    page.wait_for_url(f"{gateway.url}/admin/")
    return email, secret


def form_with(page, button: str):
    """The form whose submit button says `button`."""
    return page.locator("form").filter(has=page.get_by_role("button", name=button, exact=True))


def _refused_as_suspended_soon(gateway, key: str, model: str) -> dict | None:
    """The gateway's error body once it refuses `key` as suspended (within 2 s), else None."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        answer = httpx.post(f"{gateway.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                            json={"model": model, "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        if answer.status_code == 401:
            return answer.json()
        time.sleep(0.1)
    return None


@pytest.mark.usefixtures("database_independent")
def test_an_admin_configures_a_model_credits_a_customer_reads_the_audit_log_and_suspends(page, screen, gateway):
    admin_email, _secret = sign_in_admin(page, gateway, screen)
    assert page.get_by_role("heading", name="Overview").count() == 1

    # A provider: the sandbox again, under a name of its own, with the sandbox's key.
    tag = uuid.uuid4().hex[:8]
    provider, model = f"journey-{tag}", f"journey-chat-{tag}"
    sandbox_key = json.loads(gateway.redis().get("tg:provider:sandbox"))["api_key"]
    page.goto(f"{gateway.url}/admin/providers")
    page.get_by_label("Name").fill(provider)
    page.get_by_label("Protocol").select_option("openai")
    page.get_by_label("Base URL").fill(f"{gateway.url}/sandbox/openai/v1")
    page.get_by_label("API key").fill(sandbox_key)
    page.get_by_role("button", name="Add provider").click()
    assert sandbox_key not in page.content() and sandbox_key[-4:] in page.content()
    page.get_by_role("button", name=f"Test {provider}").click()
    status = page.get_by_role("status").filter(has_text=f"Test of {provider}")
    assert "200" in status.inner_text() and "ms" in status.inner_text()
    screenshot(page, "admin-providers", screen)

    # A model on it, and a second route to the demo's sandbox provider, tried after it.
    page.goto(f"{gateway.url}/admin/models")
    adding = form_with(page, "Add model")
    adding.get_by_label("Model name").fill(model)
    adding.get_by_label("Provider").select_option(provider)
    adding.get_by_label("Upstream model").fill("sandbox-chat")
    adding.get_by_label("Input (USD per 1M tokens)").fill("0.15")
    adding.get_by_label("Output (USD per 1M tokens)").fill("0.60")
    adding.get_by_role("button", name="Add model").click()
    page.wait_for_url(re.compile(rf".*/admin/models/{model}$"))
    route = form_with(page, "Save route")
    route.get_by_label("Provider").select_option("sandbox")
    route.get_by_label("Upstream model").fill("sandbox-chat")
    route.get_by_label("Priority").fill("1")
    route.get_by_label("Input (USD per 1M tokens)").fill("0.15")
    route.get_by_label("Output (USD per 1M tokens)").fill("0.60")
    route.get_by_role("button", name="Save route").click()
    assert page.locator("tr", has_text=provider).count() >= 1 and page.locator("tr", has_text="sandbox").count() >= 2
    screenshot(page, "admin-model", screen)

    # A customer with a key and no money: credited by the admin, with a reason.
    customer = new_email()
    gateway.cli("account", "create", customer)
    key = gateway.create_key(customer)
    page.goto(f"{gateway.url}/admin/accounts")
    page.get_by_label("Email or id").fill(customer)
    page.get_by_role("button", name="Search accounts").click()
    page.get_by_role("link", name=customer).click()
    credit = form_with(page, "Credit or debit account")
    credit.get_by_label("Amount (USD)").fill("5.00")
    credit.get_by_label("Reason").fill("Welcome credit")
    credit.get_by_role("button", name="Credit or debit account").click()
    assert page.locator("#live-balance").inner_text() == "$5.00"
    screenshot(page, "admin-account", screen)
    assert gateway.chat(key, {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}) == 200

    # The audit log has each change, who made it, and its values before and after.
    page.goto(f"{gateway.url}/admin/audit")
    log = page.content()
    for entity in ("provider", "model", "route", "ledger_transaction"):
        assert entity in log, entity
    assert "Welcome credit" in log and f"admin {admin_email}" in log
    assert sandbox_key not in log
    screenshot(page, "admin-audit", screen)

    # Suspended, the customer's key is refused within 2 s, saying why.
    page.goto(page.url.split("/admin/")[0] + "/admin/accounts?q=" + customer)
    page.get_by_role("link", name=customer).click()
    page.on("dialog", lambda dialog: dialog.accept())
    suspend = form_with(page, "Suspend account")
    suspend.get_by_label("Reason for suspending").fill("Chargeback under review")
    suspend.get_by_role("button", name="Suspend account").click()
    assert page.get_by_role("button", name="Reactivate account").count() == 1
    refused = _refused_as_suspended_soon(gateway, key, model)
    assert refused is not None and refused["error"]["code"] == "account_suspended"
    assert "suspended" in refused["error"]["message"]
    page.goto(f"{gateway.url}/admin/audit?actor={admin_email}&action=update")
    assert "Chargeback under review" in page.content() and "suspended" in page.content()
    screenshot(page, "admin-audit-changes", screen)

    # The overview counts the request the customer made.
    page.goto(f"{gateway.url}/admin/")
    assert page.locator("tr", has_text=model).count() >= 1
    screenshot(page, "admin-overview", screen)
