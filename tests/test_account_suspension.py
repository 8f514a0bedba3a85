"""Suspension through the real gateway: an account suspended with `tollgate account suspend`, the
admin console's Accounts page or the admin API has its working key refused within 2 s by both
protocols, 401 `account_suspended` in each protocol's error shape, with a message that says the
account is suspended (and by /api/v1 too); reactivated, the key works again within 2 s."""
from __future__ import annotations

import json
import time

import pytest
from admin_client import AdminClient, make_admin, make_admin_key
from console_client import settings_of
from helpers import bearer, headers_for, new_customer, post_raw, request_json

PATH = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
MODEL = {"openai": "sandbox-chat", "anthropic": "sandbox-claude"}
WITHIN = 2.0  # seconds: the gateway caches a key's look-up for 1 s
SUSPENDED = "This account is suspended"


def call(gateway, key: str, protocol: str) -> tuple[int, dict]:
    """(status, decoded answer) of a small request in the protocol."""
    body = {"model": MODEL[protocol], "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}
    status, _headers, answer = post_raw(gateway, PATH[protocol], body, headers_for(protocol, key))
    return status, json.loads(answer)


def answered_within(gateway, key: str, protocol: str, status: int, since: float) -> dict:
    """The first answer of `status` to the key's requests, which must come within WITHIN seconds of
    `since` (a monotonic time)."""
    while True:
        got, answer = call(gateway, key, protocol)
        if got == status:
            return answer
        assert time.monotonic() - since < WITHIN, f"{protocol} still answered {got} after {WITHIN} s: {answer}"
        time.sleep(0.05)


class Cli:
    def __init__(self, gateway):
        self.gateway = gateway

    def suspend(self, account_id: int) -> None:
        self.gateway.cli("account", "suspend", str(account_id), "--reason", "suspension test")

    def reactivate(self, account_id: int) -> None:
        self.gateway.cli("account", "reactivate", str(account_id), "--reason", "suspension test over")


class AdminPage:
    def __init__(self, gateway):
        self.client = AdminClient(gateway=gateway)
        self.client.sign_in(make_admin(settings_of(gateway)))

    def _post(self, account_id: int, action: str, reason: str) -> None:
        self.client.get(f"/admin/accounts/{account_id}")
        response = self.client.post_form(f"/admin/accounts/{account_id}/{action}", {"standing-reason": reason})
        assert response.status_code == 200, response.text

    def suspend(self, account_id: int) -> None:
        self._post(account_id, "suspend", "suspension test")

    def reactivate(self, account_id: int) -> None:
        self._post(account_id, "reactivate", "suspension test over")


class AdminApi:
    def __init__(self, gateway):
        self.gateway = gateway
        self.headers = bearer(make_admin_key(settings_of(gateway)))

    def _post(self, account_id: int, action: str, body: dict) -> None:
        status, _headers, answer = request_json(self.gateway, "POST", f"/api/admin/v1/accounts/{account_id}/{action}",
                                                self.headers, body)
        assert status == 200 and answer["changed"] and answer["live"], answer

    def suspend(self, account_id: int) -> None:
        self._post(account_id, "suspend", {"reason": "suspension test"})

    def reactivate(self, account_id: int) -> None:
        self._post(account_id, "reactivate", {})


@pytest.fixture(params=[Cli, AdminPage, AdminApi], ids=["cli", "admin page", "admin api"])
def admin_door(request, gateway):
    return request.param(gateway)


def test_a_suspended_accounts_key_is_refused_within_2_s_and_works_again_once_reactivated(gateway, admin_door):
    email, key = new_customer(gateway)
    account_id = json.loads(gateway.cli("account", "show", email, "--json").stdout)["id"]
    for protocol in PATH:
        assert call(gateway, key, protocol)[0] == 200

    admin_door.suspend(account_id)
    suspended_at = time.monotonic()
    openai = answered_within(gateway, key, "openai", 401, suspended_at)
    assert (openai["error"]["code"], openai["error"]["type"]) == ("account_suspended", "invalid_request_error")
    assert openai["error"]["message"].startswith(SUSPENDED)
    anthropic = answered_within(gateway, key, "anthropic", 401, suspended_at)
    assert (anthropic["type"], anthropic["error"]["type"]) == ("error", "authentication_error")
    assert anthropic["error"]["message"].startswith(SUSPENDED)
    status, _headers, balance = request_json(gateway, "GET", "/api/v1/balance", bearer(key))
    assert (status, balance["error"]["code"]) == (401, "account_suspended")
    assert balance["error"]["message"].startswith(SUSPENDED)

    admin_door.reactivate(account_id)
    reactivated_at = time.monotonic()
    for protocol in PATH:
        answered_within(gateway, key, protocol, 200, reactivated_at)
    assert request_json(gateway, "GET", "/api/v1/balance", bearer(key))[0] == 200


def test_a_key_made_while_suspended_is_refused_too(gateway):
    email, _key = new_customer(gateway)
    gateway.cli("account", "suspend", email, "--reason", "suspension test")
    key = gateway.create_key(email)
    status, answer = call(gateway, key, "openai")
    assert (status, answer["error"]["code"]) == (401, "account_suspended")
