"""A customer's whole journey through the console in real Chromium, on a small and a large screen:
sign up, receive the mail, verify, log in, create a key, call the API with it through the
official openai SDK against the sandbox, find the request in Logs at the exact cost /api/v1/usage
reports, download the CSV and compare every figure, rotate the key, log out. Each page it shows is
saved as a screenshot (tests/browser.py)."""
from __future__ import annotations

import csv
import io
import time

import openai
import pytest
from browser import screenshot
from console_client import PASSWORD, new_email
from mail_server import link_in

from control_plane.usage_classes import USAGE_CLASSES

# The sandbox answers this prompt with 23 input and 24 output tokens; at sandbox-chat's demo price
# ($0.15 / $0.60 per 1M) that is 23 × 150 + 24 × 600 = 17,850 nano-USD.
PROMPT = "Say hello to the console"
COST_NANO = 17_850


def _sign_up(page, gateway, mail_server, email: str, screen: str) -> None:
    page.goto(f"{gateway.url}/console/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Confirm password").fill(PASSWORD)
    screenshot(page, "signup", screen)
    seen = len(mail_server.messages)
    page.get_by_role("button", name="Create account").click()
    screenshot(page, "signup-check-email", screen)
    message = mail_server.wait_for(email, "Verify", after=seen)
    page.goto(link_in(message, "/console/verify/").replace(gateway.env.get("TOLLGATE_PUBLIC_URL", gateway.url),
                                                             gateway.url))
    assert "verified" in page.content()


def _log_in(page, gateway, email: str, screen: str) -> None:
    page.goto(f"{gateway.url}/console/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    screenshot(page, "login", screen)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{gateway.url}/console/")


def _create_key(page, gateway, screen: str) -> str:
    page.goto(f"{gateway.url}/console/keys")
    page.get_by_label("Name").fill("journey")
    page.get_by_label("Spend limit (USD)").fill("5.00")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key").inner_text().strip()
    assert secret.startswith("sk-tg-")
    screenshot(page, "key-created", screen)
    return secret


def _refused_soon(gateway, secret: str) -> bool:
    """Whether the gateway refuses `secret` within 2 s (it caches keys for 1 s)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if gateway.chat(secret, {"model": "sandbox-chat", "messages": [{"role": "user", "content": "hi"}]}) == 401:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.usefixtures("database_independent")
def test_a_customer_signs_up_calls_the_api_and_finds_the_exact_charge_in_logs_and_csv(
        page, screen, gateway, mail_server):
    email = new_email()
    _sign_up(page, gateway, mail_server, email, screen)
    _log_in(page, gateway, email, screen)
    gateway.cli("credit", email, "10", "--reason", "Welcome credit")
    secret = _create_key(page, gateway, screen)

    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="sandbox-chat", messages=[{"role": "user", "content": PROMPT}])
    request_id = raw.headers["x-request-id"]
    answer = raw.parse()
    gateway.wait_drained()
    [row] = [row for row in gateway.usage_rows(secret) if row["request_id"] == request_id]
    assert (row["tokens"]["input"], row["tokens"]["output"]) == (answer.usage.prompt_tokens,
                                                                  answer.usage.completion_tokens) == (23, 24)
    assert row["cost_nano"] == COST_NANO

    page.goto(f"{gateway.url}/console/logs")
    line = page.locator("tr", has=page.get_by_role("link", name=request_id))
    assert "$0.00001785" in line.inner_text()
    screenshot(page, "logs-one-request", screen)
    line.get_by_role("link", name=request_id).click()
    assert "$0.00001785" in page.content()
    screenshot(page, "request-detail", screen)

    page.goto(f"{gateway.url}/console/logs")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    [csv_row] = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert csv_row["request_id"] == request_id
    assert int(csv_row["cost_nano"]) == row["cost_nano"] == COST_NANO
    assert csv_row["cost_usd"] == "0.00001785"
    assert csv_row["status"] == str(row["status"]) == "200"
    assert csv_row["model"] == row["model"] == "sandbox-chat"
    for usage in USAGE_CLASSES:
        assert int(csv_row[usage.column]) == row["tokens"][usage.price], usage.column

    page.goto(f"{gateway.url}/console/keys")
    page.get_by_text("Rotate secret…").click()
    page.get_by_role("button", name="Rotate secret").click()
    rotated = page.locator("#new-key").inner_text().strip()
    assert rotated.startswith("sk-tg-") and rotated != secret
    screenshot(page, "key-rotated", screen)
    assert _refused_soon(gateway, secret)
    assert gateway.chat(rotated, {"model": "sandbox-chat", "messages": [{"role": "user", "content": "hi"}]}) == 200

    page.get_by_role("button", name="Log out").click()
    page.goto(f"{gateway.url}/console/")
    assert "/console/login" in page.url
