"""The console's accounts for people, against a running instance that mails through a real SMTP
server: sign up, verify, log in and out, reset, CSRF, throttling, no user enumeration, and the
set-password link of accounts an operator makes."""
from __future__ import annotations

import re
import time

import pytest
from argon2 import PasswordHasher
from console_client import (
    PASSWORD,
    ConsoleClient,
    account_row,
    new_email,
    path_of,
    settings_of,
    signed_in_client,
)
from mail_server import link_in, text_of
from sqlalchemy import update
from sqlalchemy.orm import Session

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import links, passwords
from control_plane.app import create_app
from control_plane.hot import redis_keys
from control_plane.models import Account
from control_plane.ops import demo, supervisor

CSRF_VALUE = re.compile(r'(name="csrf_token"[^>]*value=")[^"]+')


@pytest.fixture
def client(gateway):
    console = ConsoleClient(gateway)
    yield console
    console.close()


def _same_page(text: str, *emails: str) -> str:
    """A page with its CSRF token and the emails it names blanked: what two answers must share."""
    text = CSRF_VALUE.sub(r"\1", text)
    for email in emails:
        text = text.replace(email, "EMAIL")
    return text


def _set_status(gateway, email: str, **values) -> None:
    with Session(db.engine_for(gateway.database_url)) as session, session.begin():
        session.execute(update(Account).where(Account.email == email).values(**values))


def test_sign_up_verify_log_in_and_out(gateway, mail_server, client):
    email = new_email()
    page = client.sign_up(email)
    assert "Check your email" in page.text and email in page.text
    account = account_row(gateway, email)
    assert account.password_hash.startswith("$argon2id$")
    assert account.email_verified_at is None
    shard = redis_keys.shard_of(account.id, settings_of(gateway).redis_shards)
    assert gateway.redis().hgetall(redis_keys.account(shard, account.id)) == {"bal": "0", "held": "0"}

    # The right password of an unverified account: told so, offered a new link, not let in.
    first = mail_server.wait_for(email, "Verify")
    refused = client.post_form("/console/login", {"email": email, "password": PASSWORD})
    assert refused.status_code == 403 and "not verified yet" in refused.text
    seen = len(mail_server.messages)
    resent = client.post_form("/console/verify/resend", {})
    assert f"We sent a new verification link to {email}" in resent.text
    second = mail_server.wait_for(email, "Verify", after=seen)
    assert client.get("/console/settings").url.path == "/console/login"

    verified = client.get(path_of(link_in(second, "/console/verify/")))
    assert verified.status_code == 200 and f"{email} is verified" in verified.text
    assert account_row(gateway, email).email_verified_at is not None
    # Single use: the state each link was bound to has changed.
    for used in (second, first):
        again = client.get(path_of(link_in(used, "/console/verify/")))
        assert again.status_code == 400 and "This link does not work" in again.text

    landed = client.log_in(email, PASSWORD)
    assert landed.url.path == "/console/"
    settings_page = client.get("/console/settings")
    assert settings_page.status_code == 200 and email in settings_page.text

    out = client.post_form("/console/logout", {})
    assert out.url.path == "/console/login" and "You are logged out." in out.text
    assert client.get("/console/settings").url.path == "/console/login"


def test_session_cookie_is_httponly_and_samesite_lax(gateway, client):
    cookie = client.get("/console/login").headers["set-cookie"]
    assert cookie.startswith("tollgate_console=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax"} <= flags and "secure" not in flags


def test_session_cookie_is_secure_when_the_public_url_is_https(tollgate_env):
    settings = settings_module.load({**tollgate_env, "TOLLGATE_PUBLIC_URL": "https://console.example.com"})
    app = create_app({"TESTING": True, "TOLLGATE_SETTINGS": settings})
    cookie = app.test_client().get("/console/login").headers["Set-Cookie"]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "secure"} <= flags


def test_posts_without_the_csrf_token_are_refused(gateway, mail_server, client):
    for path, fields in (("/console/login", {"email": new_email(), "password": PASSWORD}),
                         ("/console/signup", {"email": new_email(), "password": PASSWORD, "confirm": PASSWORD})):
        refused = client.post_form(path, fields, csrf=False)
        assert refused.status_code == 403 and "Form expired" in refused.text, path
    signed_in = signed_in_client(gateway, mail_server)
    for path, fields in (("/console/settings/password", {"current_password": PASSWORD, "password": "x" * 12,
                                                         "confirm": "x" * 12}),
                         ("/console/logout", {})):
        refused = signed_in.post_form(path, fields, csrf=False)
        assert refused.status_code == 403 and "Form expired" in refused.text, path
        forged = signed_in.post_form(path, {**fields, "csrf_token": "forged"})
        assert forged.status_code == 403, path
    assert signed_in.get("/console/settings").status_code == 200  # still signed in
    signed_in.close()


def test_sign_up_with_a_known_email_answers_as_for_a_new_one(gateway, mail_server, client):
    known = signed_in_client(gateway, mail_server)
    fresh = new_email()
    again = client.sign_up(known.email, "another password entirely")
    new = client.sign_up(fresh)
    assert again.status_code == new.status_code == 200
    assert _same_page(again.text, known.email) == _same_page(new.text, fresh)
    notice = mail_server.wait_for(known.email, "Someone tried to sign up with your address")
    assert "/console/reset" in text_of(notice)
    # Nothing about the known account changed: its password is still its own.
    ConsoleClient(gateway).log_in(known.email, PASSWORD)
    known.close()


def test_login_fails_alike_for_an_unknown_email_and_a_wrong_password(gateway, mail_server, client):
    known = signed_in_client(gateway, mail_server)
    unknown = new_email()
    wrong = client.post_form("/console/login", {"email": known.email, "password": "not the password"})
    missing = client.post_form("/console/login", {"email": unknown, "password": "not the password"})
    assert wrong.status_code == missing.status_code == 401
    assert "Wrong email or password." in wrong.text
    assert _same_page(wrong.text, known.email) == _same_page(missing.text, unknown)
    known.close()


def test_short_or_mismatched_passwords_are_refused_at_sign_up(client):
    short = client.post_form("/console/signup", {"email": new_email(), "password": "short", "confirm": "short"})
    assert short.status_code == 400 and f"Use at least {passwords.MIN_LENGTH} characters" in short.text
    differ = client.post_form("/console/signup", {"email": new_email(), "password": PASSWORD, "confirm": PASSWORD + "!"})
    assert differ.status_code == 400 and "The two passwords differ." in differ.text
    signup = client.get("/console/signup").text
    for label in ('<label for="email">Email</label>', '<label for="password">Password</label>',
                  '<label for="confirm">Confirm password</label>', '<button type="submit">Create account</button>'):
        assert label in signup


def test_password_reset_by_a_single_use_link(gateway, mail_server, client):
    owner = signed_in_client(gateway, mail_server)
    unknown = new_email()
    asked = client.post_form("/console/reset", {"email": owner.email})
    not_asked = client.post_form("/console/reset", {"email": unknown})
    assert asked.status_code == not_asked.status_code == 200
    assert f"If an account exists for <strong>{owner.email}</strong>, we sent a link" in asked.text
    assert _same_page(asked.text, owner.email) == _same_page(not_asked.text, unknown)
    assert mail_server.sent_to(unknown) == []
    assert '<button type="submit">Send reset link</button>' in client.get("/console/reset").text

    link = path_of(link_in(mail_server.wait_for(owner.email, "Reset your Tollgate password"), "/console/reset/"))
    form = client.get(link)
    assert form.status_code == 200 and owner.email in form.text
    done = client.post_form(link, {"password": "a brand new password", "confirm": "a brand new password"})
    assert done.url.path == "/console/login" and "Your password is set." in done.text
    assert client.post_form(link, {"password": "a third password!", "confirm": "a third password!"}).status_code == 400
    assert client.get(link).status_code == 400
    # The reset ended the sessions the account had; the old password no longer works.
    assert owner.get("/console/settings").url.path == "/console/login"
    assert client.post_form("/console/login", {"email": owner.email, "password": PASSWORD}).status_code == 401
    client.log_in(owner.email, "a brand new password")
    owner.close()


def test_reset_mails_to_one_address_are_capped_per_hour(gateway, mail_server, client):
    """Reset requests cannot flood an address: after 5 mails this hour the page answers the same
    and nothing more is sent."""
    owner = signed_in_client(gateway, mail_server)  # its verification mail was the first
    for _ in range(6):
        answer = client.post_form("/console/reset", {"email": owner.email})
        assert answer.status_code == 200 and "we sent a link" in answer.text
    sent = [message["Subject"] for message in mail_server.sent_to(owner.email)]  # sent before each answer
    assert sent == ["Verify your email for Tollgate"] + ["Reset your Tollgate password"] * 4
    owner.close()


def test_expired_links_are_refused(gateway, mail_server, client):
    owner = signed_in_client(gateway, mail_server)
    account = account_row(gateway, owner.email)
    settings = settings_of(gateway)
    for purpose in (links.RESET, links.SET_PASSWORD, links.VERIFY):
        fresh = links.make_token(settings, purpose, account, issued_at=int(time.time()) - purpose.max_age + 60)
        stale = links.make_token(settings, purpose, account, issued_at=int(time.time()) - purpose.max_age - 1)
        if purpose is not links.VERIFY:  # (opening a verify link uses it; this account is verified anyway)
            assert client.get(purpose.path + fresh).status_code == 200, purpose.name
        assert client.get(purpose.path + stale).status_code == 400, purpose.name
    assert client.get(links.RESET.path + "not-a-token").status_code == 400
    owner.close()


def test_logins_are_throttled_per_email(gateway, mail_server, client):
    owner = signed_in_client(gateway, mail_server)
    owner.close()
    for _ in range(5):
        assert client.post_form("/console/login", {"email": owner.email, "password": "wrong password"}).status_code == 401
    # Now even the right password waits, and the answer says why.
    blocked = client.post_form("/console/login", {"email": owner.email, "password": PASSWORD})
    assert blocked.status_code == 429 and "Too many attempts" in blocked.text
    # For an email that has no account, alike.
    unknown = new_email()
    for _ in range(5):
        client.post_form("/console/login", {"email": unknown, "password": "wrong password"})
    assert client.post_form("/console/login", {"email": unknown, "password": "wrong password"}).status_code == 429
    # Other accounts from the same address log in.
    signed_in_client(gateway, mail_server).close()


def test_logins_are_throttled_per_client_address(app):
    """Against the control plane itself, which takes the client's address from X-Forwarded-For
    (nginx sets it for a real instance), so that this test does not lock out the shared one's."""
    client = ConsoleClient(app=app)
    guesser, other = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.9"}
    for _ in range(20):
        wrong = client.post_form("/console/login", {"email": new_email(), "password": "guess"}, headers=guesser)
        assert wrong.status_code == 401
    assert client.post_form("/console/login", {"email": new_email(), "password": "guess"},
                            headers=guesser).status_code == 429
    assert client.post_form("/console/login", {"email": new_email(), "password": "guess"},
                            headers=other).status_code == 401


def test_after_login_next_is_followed_only_within_the_console(gateway, mail_server):
    owner = signed_in_client(gateway, mail_server)
    owner.post_form("/console/logout", {})
    sent_back = owner.get("/console/settings", follow=False)
    assert sent_back.status_code == 303 and sent_back.headers["location"] == "/console/login?next=%2Fconsole%2Fsettings"
    for asked, landed in (("/console/settings", "/console/settings"), ("https://evil.example/", "/console/"),
                          ("//evil.example/console", "/console/"), ("/\\evil.example", "/console/")):
        answer = owner.post_form("/console/login", {"email": owner.email, "password": PASSWORD, "next": asked},
                                 follow=False)
        assert answer.status_code == 303 and answer.headers["location"] == landed, asked
        owner.post_form("/console/logout", {})
    owner.close()


def test_disabled_accounts_cannot_log_in(gateway, mail_server, client):
    owner = signed_in_client(gateway, mail_server)
    _set_status(gateway, owner.email, status="disabled")
    assert owner.get("/console/settings").url.path == "/console/login"  # its session stops working
    refused = client.post_form("/console/login", {"email": owner.email, "password": PASSWORD})
    assert refused.status_code == 403 and "This account is disabled" in refused.text
    assert client.get("/console/settings").url.path == "/console/login"
    owner.close()


def test_an_older_password_hash_is_replaced_at_login(gateway, mail_server):
    owner = signed_in_client(gateway, mail_server)
    weaker = PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)
    _set_status(gateway, owner.email, password_hash=weaker)
    owner.post_form("/console/logout", {})
    owner.log_in(owner.email, PASSWORD)
    stored = account_row(gateway, owner.email).password_hash
    assert stored != weaker and stored.startswith("$argon2id$") and not passwords.needs_rehash(stored)
    owner.close()


def test_sign_up_closed(tollgate_env):
    settings = settings_module.load({**tollgate_env, "TOLLGATE_SIGNUP": "closed"})
    client = ConsoleClient(app=create_app({"TESTING": True, "TOLLGATE_SETTINGS": settings}))
    page = client.get("/console/signup")
    assert page.status_code == 403 and "Sign-up is closed" in page.text and "<form" not in page.text.split("<main>")[1]
    token = client.get("/console/login").text
    assert "Sign up</a>." not in token
    refused = client.post_form("/console/signup", {"email": new_email(), "password": PASSWORD, "confirm": PASSWORD})
    assert refused.status_code == 403


def test_account_create_prints_a_set_password_link(gateway, client):
    email = new_email()
    out = gateway.cli("account", "create", email).stdout
    link = path_of(re.search(r"https?://\S+/console/set-password/\S+", out).group(0))
    form = client.get(link)
    assert form.status_code == 200 and "Set your password" in form.text and email in form.text
    done = client.post_form(link, {"password": "operator made it", "confirm": "operator made it"})
    assert "Your password is set." in done.text
    assert client.get(link).status_code == 400
    client.log_in(email, "operator made it")  # an operator's account counts as verified
    assert client.get("/console/settings").status_code == 200


def test_tollgate_up_prints_the_console_and_the_demo_accounts_set_password_link(settings, app):
    demo_key, demo_link = supervisor.prepare(settings)
    printed = supervisor.banner(settings, demo_key, demo_link)
    assert f"Console:            {settings.base_url}/console/" in printed
    assert f"Admin console:      {settings.base_url}/admin/" in printed
    link = path_of(re.search(r"https?://\S+/console/set-password/\S+", printed).group(0))
    client = ConsoleClient(app=app)
    client.post_form(link, {"password": "the demo password", "confirm": "the demo password"})
    client.log_in(demo.DEMO_EMAIL, "the demo password")
    assert supervisor.prepare(settings)[1] is None  # it has a password now: no link
