"""The console's Keys page against the shared instance: a key shown once, spent vs limit, rotate and
revoke through CSRF-protected forms, errors next to their fields, another account's keys a 404."""
import html
import re

import pytest
from console_client import signed_in_client
from helpers import rows_of
from test_api_keys import CHAT, refused_within

from control_plane.money import format_usd

SECRET = re.compile(r'<code id="new-key">(sk-tg-[^<]+)</code>')


@pytest.fixture
def console(gateway, mail_server):
    """A signed-in client of a new account with $10."""
    client = signed_in_client(gateway, mail_server)
    gateway.cli("credit", client.email, "10", "--reason", "test credit")
    yield client
    client.close()


def create_key(console, **fields) -> tuple[str, str]:
    """Creates a key through the form: (its secret, the page that showed it)."""
    console.get("/console/keys")
    response = console.post_form("/console/keys", {"name": "", "limit": "", "rpm": "", "tpm": "", "expires": "",
                                                   **fields})
    assert response.status_code == 200, response.text
    return SECRET.search(response.text).group(1), response.text


def key_id(console, secret: str) -> int:
    """The id of the key whose prefix the keys page shows for this secret."""
    page = console.get("/console/keys").text
    for found_id, prefix in re.findall(r'<tr id="key-(\d+)">\s*<td>[^<]*</td>\s*<td class="mono">([^<]+)…', page):
        if secret.startswith(prefix):
            return int(found_id)
    raise AssertionError(f"no row for {secret[:10]}")


def row_of(page: str, found_id: int) -> str:
    return html.unescape(re.search(rf'<tr id="key-{found_id}">(.*?)</tr>', page, re.DOTALL).group(1))


def test_a_new_key_is_shown_once_and_then_only_its_prefix(gateway, console):
    secret, page = create_key(console, name="my app", limit="5.25", rpm="60", models=["sandbox-chat", "gpt-4o"],
                              expires="2099-12-31")
    assert "Copy" in page and "copy.js" in page and "shown only this once" in page
    assert gateway.chat(secret, CHAT) == 200
    shown = console.get("/console/keys")
    assert secret not in shown.text  # reloading never shows it again
    row = row_of(shown.text, key_id(console, secret))
    assert secret[:10] + "…" in row
    assert "my app" in row and "$5.25" in row and "gpt-4o, sandbox-chat" in row and ">60<" in row
    assert "active" in row and "2099-12-31 00:00:00 UTC" in row


def test_the_secret_page_is_not_kept_by_the_browser(console):
    console.get("/console/keys")
    response = console.post_form("/console/keys", {"name": "x"})
    assert response.headers["Cache-Control"] == "no-store"


def test_spent_is_exact_against_the_limit(gateway, console):
    secret, _page = create_key(console, limit="2")
    assert gateway.chat(secret, CHAT) == 200
    cost = rows_of(gateway, secret, 1)[0]["cost_nano"]
    row = row_of(console.get("/console/keys").text, key_id(console, secret))
    assert f"<td class=\"num\">{format_usd(cost)}</td>" in row and "$2.00" in row


def test_allowed_models_are_enforced_by_the_gateway(gateway, console):
    secret, _page = create_key(console, models=["gpt-4o"])
    assert gateway.chat(secret, {**CHAT, "model": "gpt-4o"}) == 200
    assert gateway.chat(secret, {**CHAT, "model": "sandbox-chat"}) == 404


@pytest.mark.parametrize(("fields", "label", "message"), [
    ({"limit": "five"}, "Spend limit (USD)", "A USD amount such as 5.00, with at most 9 decimals."),
    ({"limit": "-1"}, "Spend limit (USD)", "A key&#39;s spend limit cannot be negative."),
    ({"rpm": "0"}, "Requests per minute", "Number must be between 1 and 2147483647."),
    ({"tpm": "lots"}, "Tokens per minute", "Not a valid integer value."),
    ({"expires": "2001-01-01"}, "Expires on", "The expiry must be in the future."),
    ({"expires": "soon"}, "Expires on", "Not a valid date value."),
    ({"models": ["no-such-model"]}, "Allowed models", "is not a valid choice"),
    ({"name": "x" * 201}, "Name", "At most 200 characters."),
])
def test_a_bad_field_is_shown_next_to_it(console, fields, label, message):
    console.get("/console/keys")
    response = console.post_form("/console/keys", fields)
    assert response.status_code == 400
    assert 'id="new-key"' not in response.text
    field = re.search(rf'(?:<label[^>]*>|<legend>){re.escape(label)}</(?:label|legend)>(.*?)</(?:div|fieldset)>',
                      response.text, re.DOTALL)
    assert field and message in field.group(1), response.text


def test_rotate_shows_a_new_secret_once_and_the_old_one_is_refused_within_two_seconds(gateway, console):
    old, _page = create_key(console, name="rotating", limit="3")
    assert gateway.chat(old, CHAT) == 200
    found_id = key_id(console, old)
    response = console.post_form(f"/console/keys/{found_id}/rotate", {})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    new = SECRET.search(response.text).group(1)
    assert new != old and "old secret stops working" in response.text
    assert refused_within(gateway, old) == 401
    assert gateway.chat(new, CHAT) == 200
    page = console.get("/console/keys").text
    assert new not in page and old[:10] not in page
    row = row_of(page, found_id)
    assert new[:10] in row and "$3.00" in row and "rotating" in row
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td>\s*<td>", row)  # rotated at


def test_revoke_refuses_the_key_within_two_seconds(gateway, console):
    secret, _page = create_key(console, name="doomed")
    found_id = key_id(console, secret)
    page = console.get("/console/keys").text
    assert "Revoke key" in row_of(page, found_id) and "cannot be undone" in row_of(page, found_id)
    response = console.post_form(f"/console/keys/{found_id}/revoke", {})
    assert response.status_code == 200 and "is revoked" in response.text
    assert "revoked" in row_of(response.text, found_id)
    assert refused_within(gateway, secret) == 401
    rotate = console.post_form(f"/console/keys/{found_id}/rotate", {})
    assert "A revoked key cannot get a new secret" in rotate.text


def test_actions_without_the_csrf_token_are_refused(gateway, console):
    secret, _page = create_key(console)
    found_id = key_id(console, secret)
    for path in ("/console/keys", f"/console/keys/{found_id}/rotate", f"/console/keys/{found_id}/revoke"):
        assert console.post_form(path, {"name": "x"}, csrf=False).status_code == 403
    assert gateway.chat(secret, CHAT) == 200


def test_another_accounts_key_is_a_404_on_every_action(gateway, mail_server, console):
    other = signed_in_client(gateway, mail_server)
    gateway.cli("credit", other.email, "10", "--reason", "test credit")
    theirs, _page = create_key(other)
    their_id = key_id(other, theirs)
    other.close()
    console.get("/console/keys")
    for action in ("rotate", "revoke"):
        for found_id in (their_id, 2**62):
            response = console.post_form(f"/console/keys/{found_id}/{action}", {})
            assert response.status_code == 404 and "Not found" in response.text
    assert f'id="key-{their_id}"' not in console.get("/console/keys").text
    assert gateway.chat(theirs, CHAT) == 200


def test_keys_need_a_login(gateway):
    from console_client import ConsoleClient

    client = ConsoleClient(gateway)
    response = client.get("/console/keys", follow=False)
    assert response.status_code == 303 and response.headers["Location"].startswith("/console/login?next=")
    client.close()
