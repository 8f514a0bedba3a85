"""A browser-like client of the console for tests: it keeps the session cookie, takes each form's
CSRF token from the pages it reads, and knows the sign-up, verification and login journeys."""
from __future__ import annotations

import html
import re
import uuid
from urllib.parse import urlsplit

import httpx
from mail_server import link_in
from sqlalchemy.orm import Session

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import accounts
from control_plane.models import Account

CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
# Signed in, this page offers forms (and so a token); signed out, it sends the client to the login form.
TOKEN_PAGE = "/console/settings"
PASSWORD = "correct horse battery staple"


def new_email() -> str:
    return f"p{uuid.uuid4().hex[:12]}@example.com"


def path_of(url: str) -> str:
    """The path and query of a link from a mail (its host is the instance's public URL)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class ConsoleClient:
    """Against a running instance (gateway), or in-process against a Flask app (app, as if at
    base_url: its client address comes from an X-Forwarded-For header, which only nginx sets
    for a real instance)."""

    def __init__(self, gateway=None, app=None, base_url: str = "http://console.test"):
        self.gateway = gateway
        if app is not None:
            self.http = httpx.Client(transport=httpx.WSGITransport(app=app), base_url=base_url,
                                     follow_redirects=True)
        else:
            self.http = httpx.Client(base_url=gateway.url, follow_redirects=True, timeout=30)
        self.csrf_token: str | None = None
        self.email: str | None = None
        self.password: str | None = None

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, follow: bool = True, **kwargs) -> httpx.Response:
        response = self.http.get(path, follow_redirects=follow, **kwargs)
        self._remember(response)
        return response

    def post_form(self, path: str, fields: dict, csrf: bool = True, follow: bool = True,
                  headers: dict | None = None) -> httpx.Response:
        """POST fields as a form, with the CSRF token of the last page read (or of `path`'s page,
        else of a page that has one) unless csrf is False."""
        data = dict(fields)
        if csrf and "csrf_token" not in data:
            data["csrf_token"] = self.csrf_token or self._fresh_token(path)
        # Signing in or out starts a new session, whose tokens differ: the next form reads a new one.
        self.csrf_token = None
        response = self.http.post(path, data=data, follow_redirects=follow, headers=headers)
        self._remember(response)
        return response

    def _remember(self, response: httpx.Response) -> None:
        found = CSRF_FIELD.search(response.text) if "html" in response.headers.get("content-type", "") else None
        if found:
            self.csrf_token = html.unescape(found.group(1))

    def _fresh_token(self, path: str) -> str:
        for page in (path, TOKEN_PAGE):
            self.get(page)
            if self.csrf_token:
                return self.csrf_token
        raise AssertionError(f"no CSRF token on {path} or {TOKEN_PAGE}")

    # -- journeys -----------------------------------------------------------------------------
    def sign_up(self, email: str, password: str = PASSWORD) -> httpx.Response:
        response = self.post_form("/console/signup", {"email": email, "password": password, "confirm": password})
        assert response.status_code == 200, response.text
        return response

    def sign_up_and_verify(self, email: str, password: str, mail_server) -> None:
        """A new account of this email and password, its email verified by the link mailed to it."""
        seen = len(mail_server.messages)
        self.sign_up(email, password)
        message = mail_server.wait_for(email, "Verify", after=seen)
        response = self.get(path_of(link_in(message, "/console/verify/")))
        assert response.status_code == 200 and "verified" in response.text, response.text
        self.email, self.password = email, password

    def log_in(self, email: str, password: str, next_path: str | None = None) -> httpx.Response:
        """Logs in (it must work); the page it lands on."""
        path = "/console/login" + (f"?next={next_path}" if next_path else "")
        fields = {"email": email, "password": password, **({"next": next_path} if next_path else {})}
        response = self.post_form(path, fields)
        assert urlsplit(str(response.url)).path != "/console/login", response.text
        self.email, self.password = email, password
        return response


def signed_in_client(gateway, mail_server, email: str | None = None, password: str = PASSWORD) -> ConsoleClient:
    """A client signed in to a new, verified account (client.email, client.password); the
    account has no money and no keys (`gateway.cli("credit", client.email, …)` adds some)."""
    client = ConsoleClient(gateway)
    email = email or new_email()
    client.sign_up_and_verify(email, password, mail_server)
    client.log_in(email, password)
    return client


def settings_of(gateway) -> settings_module.Settings:
    """The instance's settings, as its processes load them (its secret, so its links, included)."""
    return settings_module.load({name: value for name, value in gateway.env.items() if name.startswith("TOLLGATE_")})


def account_row(gateway, email: str) -> Account:
    """The account's SQL row as it is now (detached: read its columns)."""
    with Session(db.engine_for(gateway.database_url), expire_on_commit=False) as session:
        account = accounts.find_by_email(session, email)
        assert account is not None, email
        return account
