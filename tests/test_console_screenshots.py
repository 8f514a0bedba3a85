"""A screenshot of every console page in real Chromium, on a small and a large screen: an empty
account, an account with a long request log (successes and failures, several keys and models),
and the pages anyone sees. Each page must answer 200 without a console error; the pictures in
var/screenshots/ are looked at by people (docs/screenshots/ keeps the README's)."""
from __future__ import annotations

import pytest
from browser import screenshot
from console_client import signed_in_client

EMPTY_PAGES = {"dashboard-empty": "/console/", "keys-empty": "/console/keys", "logs-empty": "/console/logs",
               "transactions-empty": "/console/transactions", "topup": "/console/topup",
               "settings": "/console/settings"}
FULL_PAGES = {"dashboard": "/console/", "keys": "/console/keys", "logs": "/console/logs",
              "logs-errors": "/console/logs?status=error", "transactions": "/console/transactions"}
PUBLIC_PAGES = {"models": "/models", "login-page": "/console/login", "signup-page": "/console/signup",
                "reset": "/console/reset"}

REQUESTS = 60


def _signed_in(page, gateway, client) -> None:
    """The browser takes over the console session of `client` (signed in over HTTP)."""
    page.context.add_cookies([{"name": cookie.name, "value": cookie.value, "url": gateway.url}
                              for cookie in client.http.cookies.jar])


def _show(page, gateway, name: str, path: str, screen: str) -> None:
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    response = page.goto(gateway.url + path)
    assert response.status == 200, (path, response.status)
    page.wait_for_load_state("networkidle")
    screenshot(page, name, screen)
    assert errors == [], (path, errors)


def _long_log(gateway, email: str) -> None:
    """REQUESTS requests of two keys: most answered, some refused (unknown model, a bad parameter)."""
    keys = [gateway.create_key(email, None, "--name", name) for name in ("web app", "batch jobs")]
    for number in range(REQUESTS):
        body = {"model": "sandbox-chat", "messages": [{"role": "user", "content": f"Question {number}"}]}
        if number % 10 == 3:
            body["model"] = "gpt-unknown"
        elif number % 10 == 7:
            body["max_tokens"] = -1
        elif number % 3 == 0:
            body["model"] = "gpt-4o"  # an alias of sandbox-chat
        gateway.chat(keys[number % 2], body)
    gateway.wait_drained()


@pytest.mark.usefixtures("database_independent")
def test_every_page_of_an_empty_and_a_busy_account_and_the_public_ones(page, screen, gateway, mail_server):
    for name, path in PUBLIC_PAGES.items():
        _show(page, gateway, name, path, screen)

    empty = signed_in_client(gateway, mail_server)
    _signed_in(page, gateway, empty)
    for name, path in EMPTY_PAGES.items():
        _show(page, gateway, name, path, screen)

    busy = signed_in_client(gateway, mail_server)
    gateway.cli("credit", busy.email, "25", "--reason", "Welcome credit")
    _long_log(gateway, busy.email)
    page.context.clear_cookies()
    _signed_in(page, gateway, busy)
    for name, path in FULL_PAGES.items():
        _show(page, gateway, name, path, screen)
    page.goto(gateway.url + "/console/logs")
    page.locator("td a.mono").first.click()
    screenshot(page, "request", screen)
    # A usage transaction opens the log of the requests it charged, and one of them its detail.
    page.goto(gateway.url + "/console/transactions")
    page.locator('a[href^="/console/logs?transaction="]').first.click()
    page.wait_for_load_state("networkidle")
    assert page.get_by_text("The requests charged in transaction #").is_visible()
    screenshot(page, "logs-of-a-transaction", screen)
    page.locator("td a.mono").first.click()
    screenshot(page, "request-of-a-transaction", screen)
