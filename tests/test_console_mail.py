"""The console's mail: into the outbox with its link logged when TOLLGATE_SMTP_URL is unset, links
on TOLLGATE_PUBLIC_URL, SMTP with a login, and an SMTP failure that never shows the password.
(The shared instance's mail through a real SMTP server is exercised by every sign-in test.)"""
from __future__ import annotations

import email
import email.policy
import logging

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from console_client import PASSWORD, ConsoleClient, new_email, path_of
from harness import free_port
from mail_server import MailServer, link_in, text_of

from control_plane import mail
from control_plane import settings as settings_module
from control_plane.app import create_app

PUBLIC_URL = "https://console.example.com"
SMTP_PASSWORD = "p@ss w0rd"
SMTP_URL_PASSWORD = "p%40ss%20w0rd"


def test_without_smtp_a_mail_lands_in_the_outbox_and_its_link_is_logged(tollgate_env, caplog):
    settings = settings_module.load({**tollgate_env, "TOLLGATE_PUBLIC_URL": PUBLIC_URL})
    assert settings.smtp_url is None
    client = ConsoleClient(app=create_app({"TESTING": True, "TOLLGATE_SETTINGS": settings}), base_url=PUBLIC_URL)
    address = new_email()
    with caplog.at_level(logging.INFO, logger="control_plane.mail"):
        client.sign_up(address)
    [written] = list(settings.outbox_dir.glob("*.eml"))
    message = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert message["To"] == address and message["From"] == settings.mail_from
    link = link_in(message, "/console/verify/")
    assert link.startswith(f"{PUBLIC_URL}/console/verify/")
    assert f"its link: {link}" in caplog.text and str(written) in caplog.text
    assert PASSWORD not in caplog.text and PASSWORD not in text_of(message)
    verified = client.get(path_of(link))
    assert verified.status_code == 200 and f"{address} is verified" in verified.text
    client.log_in(address, PASSWORD)


class _LoginServer(MailServer):
    """The tests' SMTP server, asking for a login (AUTH PLAIN / LOGIN) over a plain connection."""

    def __init__(self):
        super().__init__()
        self.logins: list[tuple[str, str]] = []
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, authenticator=self._authenticate,
                                      auth_required=True, auth_require_tls=False)

    def _authenticate(self, _server, _session, _envelope, _mechanism, credentials):
        self.logins.append((credentials.login.decode(), credentials.password.decode()))
        return AuthResult(success=True)


@pytest.fixture
def login_server():
    server = _LoginServer().start()
    yield server
    server.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_with_a_login(tollgate_env, login_server):
    url = f"smtp://mailer:{SMTP_URL_PASSWORD}@127.0.0.1:{login_server.port}"
    settings = settings_module.load({**tollgate_env, "TOLLGATE_SMTP_URL": url, "TOLLGATE_MAIL_FROM": "Console <c@example.com>"})
    mail.send(settings, "someone@example.com", "Hello", "The text.\n")
    received = login_server.wait_for("someone@example.com", "Hello")
    assert received["From"] == "Console <c@example.com>" and text_of(received).strip() == "The text."
    assert login_server.logins == [("mailer", SMTP_PASSWORD)]
    assert not list(settings.outbox_dir.glob("*.eml"))


def test_an_smtp_failure_never_shows_the_password(tollgate_env, caplog):
    url = f"smtp://mailer:{SMTP_URL_PASSWORD}@127.0.0.1:{free_port()}"  # nothing listens there
    settings = settings_module.load({**tollgate_env, "TOLLGATE_SMTP_URL": url})
    assert SMTP_URL_PASSWORD not in repr(settings)
    with caplog.at_level(logging.INFO, logger="control_plane.mail"), pytest.raises(mail.MailError) as failed:
        mail.send(settings, "someone@example.com", "Hello", "The text.\n")
    assert str(failed.value) == f"could not send mail through smtp://127.0.0.1:{url.rsplit(':', 1)[1]}"
    assert "could not mail 'Hello' to someone@example.com" in caplog.text
    for secret in (SMTP_URL_PASSWORD, SMTP_PASSWORD, "mailer"):
        assert secret not in caplog.text and secret not in str(failed.value)
