"""The links the console mails: verify an email, reset or set a password, confirm a new email.

Each is a token signed with a key derived from the installation secret (itsdangerous), for one
purpose and with its own lifetime. A token also carries a digest of the account state its use
changes (the password hash, the email and whether it is verified), so it works once: after it
has been followed, the state differs and the same link is refused. A newer link of the same kind
does not retire older ones until one of them is used.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from .. import crypto
from ..models import Account
from ..settings import Settings

HOUR = 3600


@dataclass(frozen=True)
class Purpose:
    name: str
    path: str  # the console page that opens it, /console/<…>/<token>
    max_age: int  # seconds


VERIFY = Purpose("verify", "/console/verify/", 48 * HOUR)
RESET = Purpose("reset", "/console/reset/", 1 * HOUR)
# For accounts an operator made (`tollgate account create`, the demo): a first password.
SET_PASSWORD = Purpose("set-password", "/console/set-password/", 7 * 24 * HOUR)
CHANGE_EMAIL = Purpose("change-email", "/console/change-email/", 24 * HOUR)


class LinkError(Exception):
    """The link is not one of ours, has expired, or was used already."""


class _BackdatedSigner(TimestampSigner):
    """Signs as of a given time: tests make links that have expired without waiting."""

    def __init__(self, *args, issued_at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.issued_at = issued_at

    def get_timestamp(self) -> int:
        return self.issued_at


def _serializer(settings: Settings, purpose: Purpose, issued_at: int | None = None) -> URLSafeTimedSerializer:
    key = crypto.derive(settings, b"tollgate console links")
    if issued_at is None:
        return URLSafeTimedSerializer(key, salt=purpose.name)
    return URLSafeTimedSerializer(key, salt=purpose.name, signer=_BackdatedSigner,
                                  signer_kwargs={"issued_at": issued_at})


def _state(account: Account, purpose: Purpose, new_email: str | None) -> str:
    """A digest of what using the link changes: a used link no longer matches it."""
    if purpose in (RESET, SET_PASSWORD):
        parts = [account.email, account.password_hash or ""]
    elif purpose is VERIFY:
        parts = [account.email, account.email_verified_at.isoformat() if account.email_verified_at else ""]
    else:
        parts = [account.email, new_email or ""]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def make_token(settings: Settings, purpose: Purpose, account: Account, new_email: str | None = None,
               issued_at: int | None = None) -> str:
    """A token for account (and, to change its email, the new address); issued_at (unix seconds)
    backdates it."""
    payload = {"a": account.id, "s": _state(account, purpose, new_email)}
    if new_email is not None:
        payload["e"] = new_email
    return _serializer(settings, purpose, issued_at).dumps(payload)


def url(settings: Settings, purpose: Purpose, token: str) -> str:
    """The link as mailed: on the console's public URL."""
    return settings.console_base_url + purpose.path + token


def make_link(settings: Settings, purpose: Purpose, account: Account, new_email: str | None = None) -> str:
    return url(settings, purpose, make_token(settings, purpose, account, new_email))


def open_token(settings: Settings, session: Session, purpose: Purpose, token: str,
               lock: bool = False) -> tuple[Account, str | None]:
    """The account a valid, unused token is for, and the new email it carries (None but for
    CHANGE_EMAIL); LinkError otherwise, also for an account that was deleted or disabled since.
    lock (in a transaction that is about to use the link): the account's row stays locked until
    it ends, so of two uses at once the second sees the first's change."""
    try:
        payload = _serializer(settings, purpose).loads(token, max_age=purpose.max_age)
    except SignatureExpired:
        raise LinkError("expired") from None
    except BadData:
        raise LinkError("invalid") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("a"), int):
        raise LinkError("invalid")
    account = session.get(Account, payload["a"], with_for_update=lock)
    if account is None or account.status != "active" or account.deleted_at is not None:
        raise LinkError("invalid")
    new_email = payload.get("e")
    if not hmac.compare_digest(str(payload.get("s", "")), _state(account, purpose, new_email)):
        raise LinkError("used")
    return account, new_email
