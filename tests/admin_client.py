"""Admins for tests: an admin account with a password, and a client that signs in to the admin
console as a browser would — enrolling TOTP with the secret the enrolment page shows (and keeping
the recovery codes it shows once), then entering a fresh code at every sign-in."""
from __future__ import annotations

import html
import re
import time
from urllib.parse import urlsplit

import pyotp
from console_client import PASSWORD, ConsoleClient, new_email

from control_plane import db
from control_plane.accounts import accounts, passwords
from control_plane.models import utcnow

SECRET_ON_PAGE = re.compile(r'id="totp-secret"[^>]*>([A-Z2-7]+)<')
RECOVERY_CODE = re.compile(r"<li><code>([0-9a-f]{5}-[0-9a-f]{5})</code></li>")


def make_admin(settings, email: str | None = None, password: str = PASSWORD) -> str:
    """A verified admin account with this password (no second factor yet); its email."""
    email = email or new_email()
    with db.session_scope(settings) as session:
        account = accounts.create_account(session, email, is_admin=True)
        account.email_verified_at = utcnow()
        account.password_hash = passwords.hash_password(password)
    return email


class AdminClient(ConsoleClient):
    """ConsoleClient that signs in at /admin/login. After the first sign-in it knows the TOTP
    secret (totp_secret) and the recovery codes (recovery_codes)."""

    totp_secret: str | None = None
    recovery_codes: list[str] = []
    _last_step: int = -1

    def fresh_code(self) -> str:
        """A code of a step no sign-in used yet (a used code is refused), waiting for one if the
        steps the server surely accepts (now and the next: it takes now ±1, and its now may have
        moved on) are used up."""
        totp = pyotp.TOTP(self.totp_secret)
        while True:
            step = int(time.time() // 30)
            for candidate in (step, step + 1):
                if candidate > self._last_step:
                    self._last_step = candidate
                    return totp.at(candidate * 30)
            time.sleep(1)

    def sign_in(self, email: str, password: str = PASSWORD, next_path: str | None = None):
        """Password, then enrolment (first time) or a code; the page it lands on (it must work)."""
        response = self.post_form("/admin/login", {"email": email, "password": password,
                                                   **({"next": next_path} if next_path else {})})
        path = urlsplit(str(response.url)).path
        if path == "/admin/enrol":
            found = SECRET_ON_PAGE.search(response.text)
            assert found, response.text
            self.totp_secret = html.unescape(found.group(1))
            response = self.post_form("/admin/enrol", {"code": self.fresh_code()})
            assert response.status_code == 200, response.text
            self.recovery_codes = RECOVERY_CODE.findall(response.text)
            assert len(self.recovery_codes) == 10, response.text
            response = self.get(next_path or "/admin/")
        elif path == "/admin/code":
            response = self.post_form("/admin/code", {"code": self.fresh_code()})
        assert response.status_code == 200 and urlsplit(str(response.url)).path not in (
            "/admin/login", "/admin/code", "/admin/enrol"), response.text
        self.email, self.password = email, password
        return response


def signed_in_admin(settings, gateway=None, app=None) -> AdminClient:
    """A new admin, enrolled and signed in (client.email, client.totp_secret)."""
    client = AdminClient(gateway=gateway, app=app)
    client.sign_in(make_admin(settings))
    return client


def make_admin_key(settings, email: str | None = None, read_only: bool = False) -> str:
    """An admin API key (its plaintext) of a new admin account, or of the admin of this email."""
    from control_plane.accounts import admin_keys

    email = email or make_admin(settings)
    with db.session_scope(settings) as session:
        _key, plaintext = admin_keys.create(session, accounts.require_by_email(session, email), read_only=read_only)
    return plaintext
