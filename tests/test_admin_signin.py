"""Admin sign-in: a second factor before any admin page, a code at every sign-in, recovery codes
shown once and used once, idle expiry, and no way in with a customer's session or a customer
account."""
from __future__ import annotations

import json
from urllib.parse import urlsplit

import pyotp
import pytest
from admin_client import AdminClient, make_admin, signed_in_admin
from console_client import PASSWORD, ConsoleClient, new_email

from control_plane import db
from control_plane.accounts import accounts, passwords
from control_plane.models import AuditEntry, ConsoleSession, utcnow


@pytest.fixture
def admin_email(settings):
    return make_admin(settings)


def _path(response) -> str:
    return urlsplit(str(response.url)).path


def test_enrolment_comes_before_any_admin_page(app, settings, admin_email):
    client = AdminClient(app=app)
    response = client.post_form("/admin/login", {"email": admin_email, "password": PASSWORD})
    assert _path(response) == "/admin/enrol"
    assert 'id="totp-secret"' in response.text and '<svg class="qr"' in response.text
    # Between the password and the code, no admin page opens.
    for page in ("/admin/",):
        assert _path(client.get(page)) == "/admin/login"
    wrong = client.post_form("/admin/enrol", {"code": "000000"})
    assert wrong.status_code == 401 and "not right" in wrong.text


def test_sign_in_enrols_then_asks_for_a_code_every_time(app, settings, admin_email):
    client = AdminClient(app=app)
    client.sign_in(admin_email)
    assert client.totp_secret and len(client.recovery_codes) == 10
    with db.read_session(settings) as session:
        account = accounts.find_by_email(session, admin_email)
        assert account.totp_secret_encrypted and client.totp_secret not in account.totp_secret_encrypted
    client.post_form("/admin/logout", {})
    assert _path(client.get("/admin/")) == "/admin/login"
    response = client.post_form("/admin/login", {"email": admin_email, "password": PASSWORD})
    assert _path(response) == "/admin/code"
    assert _path(client.get("/admin/")) == "/admin/login"
    client.sign_in(admin_email)
    assert client.get("/admin/").status_code == 200


def test_a_code_works_once(app, settings, admin_email):
    first = AdminClient(app=app)
    first.sign_in(admin_email)
    used = pyotp.TOTP(first.totp_secret).at(first._last_step * 30)
    second = AdminClient(app=app)
    second.post_form("/admin/login", {"email": admin_email, "password": PASSWORD})
    replay = second.post_form("/admin/code", {"code": used})
    assert replay.status_code == 401 and "used already" in replay.text


def test_a_recovery_code_signs_in_once(app, settings, admin_email):
    enrolled = AdminClient(app=app)
    enrolled.sign_in(admin_email)
    code = enrolled.recovery_codes[0]
    for expected in (200, 401):
        client = AdminClient(app=app)
        client.post_form("/admin/login", {"email": admin_email, "password": PASSWORD})
        response = client.post_form("/admin/code", {"code": code.upper()})
        assert response.status_code == expected, response.text


def test_the_session_expires_when_idle(app, settings, admin_email):
    client = AdminClient(app=app)
    client.sign_in(admin_email)
    with db.session_scope(settings) as session:
        row = session.query(ConsoleSession).filter_by(admin=True).one()
        assert (row.expires_at - utcnow()).total_seconds() == pytest.approx(settings.admin_session_minutes * 60, abs=30)
        row.expires_at = utcnow()
    assert _path(client.get("/admin/")) == "/admin/login"


def test_a_customer_never_opens_an_admin_page(app, settings):
    email = new_email()
    with db.session_scope(settings) as session:
        account = accounts.create_account(session, email)
        account.email_verified_at = utcnow()
        account.password_hash = passwords.hash_password(PASSWORD)
    customer = ConsoleClient(app=app)
    customer.log_in(email, PASSWORD)
    assert _path(customer.get("/admin/")) == "/admin/login"
    refused = customer.post_form("/admin/login", {"email": email, "password": PASSWORD})
    assert refused.status_code == 403 and "cannot use the admin console" in refused.text
    assert _path(customer.get("/admin/enrol")) == "/admin/login"


def test_an_admins_customer_session_does_not_open_admin_pages(app, settings, admin_email):
    client = ConsoleClient(app=app)
    client.log_in(admin_email, PASSWORD)
    assert _path(client.get("/admin/")) == "/admin/login"


def test_sign_in_changes_are_audited_without_secrets(app, settings, admin_email):
    client = signed_in_admin(settings, app=app)
    with db.read_session(settings) as session:
        account = accounts.find_by_email(session, client.email)
        rows = session.query(AuditEntry).filter_by(entity="account", entity_id=str(account.id)).all()
    enrolment = [row for row in rows if row.action == "update" and "totp_secret_encrypted" in json.loads(row.after)]
    assert [json.loads(row.after) for row in enrolment] == [{"totp_secret_encrypted": "[redacted]"}]
    assert [row.actor for row in enrolment] == [f"admin {client.email}"]
    assert all(client.totp_secret not in (row.after or "") for row in rows)


def test_a_suspended_customer_is_told_so_at_login(app, settings):
    from control_plane.accounts import suspension

    email = new_email()
    with db.session_scope(settings) as session:
        account = accounts.create_account(session, email)
        account.email_verified_at = utcnow()
        account.password_hash = passwords.hash_password(PASSWORD)
    suspension.change(settings, account.id, suspended=True, reason="chargeback")
    refused = ConsoleClient(app=app).post_form("/console/login", {"email": email, "password": PASSWORD})
    assert refused.status_code == 403 and "This account is suspended." in refused.text
