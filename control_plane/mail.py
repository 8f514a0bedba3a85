"""The console's mail (verification, password reset, email change), through TOLLGATE_SMTP_URL.

smtp://[user:pass@]host:port sends in the clear (add ?starttls=1 to upgrade the connection
first), smtps://… over TLS from the start. Without TOLLGATE_SMTP_URL (the `make run` default)
each message is written to $TOLLGATE_HOME/outbox/ as an .eml file and its link is logged, so
sign-up works offline. Neither the log nor an error ever carries the SMTP password.
"""
from __future__ import annotations

import logging
import secrets
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from .models import utcnow
from .settings import Settings

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 15


class MailError(RuntimeError):
    """The SMTP server could not be reached or refused the message."""


def message(settings: Settings, to: str, subject: str, text: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = settings.mail_from
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    mail["Message-ID"] = make_msgid(domain=domain)
    mail.set_content(text)
    return mail


def send(settings: Settings, to: str, subject: str, text: str, link: str | None = None) -> None:
    """Mail text to one address; link (which text contains) is what the outbox mode logs."""
    mail = message(settings, to, subject, text)
    if settings.smtp_url is None:
        _write_to_outbox(settings, mail, link)
    else:
        _send_smtp(settings.smtp_url, mail)
        log.info("mailed %r to %s", subject, to)


def _write_to_outbox(settings: Settings, mail: EmailMessage, link: str | None) -> None:
    outbox = settings.outbox_dir
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{utcnow():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}.eml"
    path.write_bytes(bytes(mail))
    log.info("no TOLLGATE_SMTP_URL: mail %r to %s written to %s%s", mail["Subject"], mail["To"], path,
             f"; its link: {link}" if link else "")


def _send_smtp(smtp_url: str, mail: EmailMessage) -> None:
    parts = urlsplit(smtp_url)
    starttls = parse_qs(parts.query).get("starttls", ["0"])[0].lower() in ("1", "true", "yes")
    where = f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"  # never the credentials
    context = ssl.create_default_context()
    try:
        if parts.scheme == "smtps":
            connection = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=TIMEOUT_SECONDS, context=context)
        else:
            connection = smtplib.SMTP(parts.hostname, parts.port or 25, timeout=TIMEOUT_SECONDS)
        with connection:
            if starttls:
                connection.starttls(context=context)
            if parts.username:
                connection.login(unquote(parts.username), unquote(parts.password or ""))
            connection.send_message(mail)
    except (OSError, smtplib.SMTPException) as exc:
        # The exception's text is the server's answer or the socket's error, never the URL.
        log.error("could not mail %r to %s through %s: %s", mail["Subject"], mail["To"], where,
                  type(exc).__name__ + (f": {exc}" if str(exc) else ""))
        raise MailError(f"could not send mail through {where}") from None
