"""No admin page and no admin API endpoint opens without an admin's own credentials: every rule of
the app under /admin/ and /api/admin/ is tried (so a page added later is tried too) with no
session, a customer's console session, an admin's customer session (password only, no second
factor), a customer's API key and an admin's customer key."""
from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest
from admin_client import make_admin, make_admin_key, signed_in_admin
from console_client import PASSWORD, ConsoleClient, new_email
from werkzeug.routing import Rule

from control_plane import db
from control_plane.accounts import accounts, api_keys, passwords
from control_plane.models import utcnow

# Pages anyone may open: the way in.
SIGN_IN = {"/admin/login", "/admin/code", "/admin/enrol"}
PLACEHOLDER = {"int": "1", "string": "x", "default": "x", "path": "x"}
VARIABLE = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>")


def _paths(app, prefix: str) -> list[tuple[str, str]]:
    """(method, path) of every rule under prefix, its variables filled with placeholders."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(prefix):
            continue
        path = _fill(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, path))
    return found


def _fill(rule: Rule) -> str:
    """/admin/accounts/<int:account_id> → /admin/accounts/1."""
    return VARIABLE.sub(lambda match: PLACEHOLDER.get(match.group(1) or "default", "x"), rule.rule)


def _customer(settings, is_admin: bool = False) -> tuple[str, str]:
    """A verified account with a console password and a customer key: (email, key)."""
    email = new_email()
    with db.session_scope(settings) as session:
        account = accounts.create_account(session, email, is_admin=is_admin)
        account.email_verified_at = utcnow()
        account.password_hash = passwords.hash_password(PASSWORD)
        _key, plaintext = api_keys.create_key(session, account, "k")
    return email, plaintext


def _refused_page(response) -> bool:
    """Sent to the admin sign-in (or refused outright), never shown."""
    if response.status_code in (303, 302):
        return urlsplit(response.headers["location"]).path == "/admin/login"
    return response.status_code in (400, 401, 403, 404, 405)


def test_the_app_has_admin_pages_and_endpoints_to_try(app):
    pages = [path for _method, path in _paths(app, "/admin")]
    endpoints = [path for _method, path in _paths(app, "/api/admin/")]
    assert "/admin/" in pages and "/admin/audit" in pages and len(pages) >= 10
    assert "/api/admin/v1/reconcile" in endpoints and len(endpoints) >= 3


@pytest.mark.parametrize("who", ["nobody", "customer", "admin without second factor"])
def test_no_admin_page_opens_without_an_admin_session(app, settings, who):
    client = ConsoleClient(app=app)
    if who != "nobody":
        email, _key = _customer(settings, is_admin=who != "customer")
        client.log_in(email, PASSWORD)
    for method, path in _paths(app, "/admin"):
        if path in SIGN_IN or path == "/admin/logout":
            continue
        if method == "GET":
            response = client.get(path, follow=False)
        else:
            response = client.post_form(path, {}, follow=False)
        assert _refused_page(response), (who, method, path, response.status_code, response.text[:300])


def test_an_admin_session_opens_the_overview(app, settings):
    client = signed_in_admin(settings, app=app)
    assert client.get("/admin/", follow=False).status_code == 200


@pytest.mark.parametrize("who", ["no key", "customer key", "admin's customer key"])
def test_no_admin_endpoint_opens_without_an_admin_key(client, settings, who):
    headers = {}
    if who != "no key":
        _email, key = _customer(settings, is_admin=who != "customer key")
        headers = {"Authorization": f"Bearer {key}"}
    expected = "missing_api_key" if who == "no key" else "admin_key_required"
    for method, path in _paths(client.application, "/api/admin/"):
        response = client.open(path, method=method, headers=headers, json={})
        assert (response.status_code, response.json["error"]["code"]) == (401, expected), (method, path)


def test_a_read_only_admin_key_only_reads(client, settings):
    key = make_admin_key(settings, make_admin(settings), read_only=True)
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/admin/v1/reconcile", headers=headers).status_code == 200
    for method, path in _paths(client.application, "/api/admin/"):
        if method == "GET":
            continue
        response = client.open(path, method=method, headers=headers, json={})
        assert (response.status_code, response.json["error"]["code"]) == (403, "admin_key_read_only"), (method, path)


def test_a_revoked_admin_key_is_refused(client, settings, cli):
    email = make_admin(settings)
    key = make_admin_key(settings, email)
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/admin/v1/reconcile", headers=headers).status_code == 200
    listed = cli("admin", "key", "list")
    assert key not in listed.stdout
    key_id = next(item["id"] for item in json.loads(listed.stdout) if item["account"] == email)
    assert cli("admin", "key", "revoke", str(key_id)).exit_code == 0
    response = client.get("/api/admin/v1/reconcile", headers=headers)
    assert (response.status_code, response.json["error"]["code"]) == (401, "admin_key_required")
