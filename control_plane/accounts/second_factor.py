"""Admins' second factor: TOTP (RFC 6238, 30 s steps, 6 digits, as authenticator apps use) and
single-use recovery codes.

The secret is kept encrypted with the installation secret (crypto.py). A code is accepted for
the current step or the one before or after (clock drift), and each step's code only once: the
step last accepted is stored, so a code seen over a shoulder cannot be replayed. Recovery codes
are shown once, at enrolment; only their SHA-256 is stored (they are random, 40 bits each).
"""
from __future__ import annotations

import hashlib
import secrets
import time

import pyotp
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .. import crypto
from ..models import Account, RecoveryCode, utcnow
from ..settings import Settings

ISSUER = "Tollgate"
RECOVERY_CODES = 10
STEP_SECONDS = 30
DRIFT_STEPS = 1


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str) -> str:
    """otpauth://totp/Tollgate:<email>?secret=…&issuer=Tollgate — what the enrolment QR code holds."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def enrolled(account: Account) -> bool:
    return account.totp_secret_encrypted is not None


def _normal(code: str) -> str:
    return "".join((code or "").split()).replace("-", "").lower()


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step (within the drift allowed) whose code `code` is, or None."""
    code = _normal(code)
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    step = int((time.time() if now is None else now) // STEP_SECONDS)
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        if secrets.compare_digest(totp.at(candidate * STEP_SECONDS), code):
            return candidate
    return None


def enrol(session: Session, settings: Settings, account: Account, secret: str, code: str) -> list[str] | None:
    """Save secret as the account's second factor if code is its current code; the recovery codes
    (replacing any earlier ones), to be shown once; None if the code is wrong."""
    step = matching_step(secret, code)
    if step is None:
        return None
    account.totp_secret_encrypted = crypto.encrypt(settings, secret)
    account.totp_last_step = step
    return _new_recovery_codes(session, account)


def verify(session: Session, settings: Settings, account: Account, code: str) -> bool:
    """A TOTP code not used before, or an unused recovery code (then used up). The account row
    must be locked by the caller's transaction (session.get(..., with_for_update=True)) so two
    sign-ins cannot both take one code."""
    if not enrolled(account):
        return False
    step = matching_step(crypto.decrypt(settings, account.totp_secret_encrypted), code)
    if step is not None:
        if account.totp_last_step is not None and step <= account.totp_last_step:
            return False
        account.totp_last_step = step
        return True
    return _use_recovery_code(session, account, code)


def reset(session: Session, account: Account) -> None:
    """Forget the second factor (`tollgate admin reset-2fa`): the admin enrols again at sign-in."""
    account.totp_secret_encrypted = None
    account.totp_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))


def _hash(code: str) -> str:
    return hashlib.sha256(_normal(code).encode()).hexdigest()


def _new_recovery_codes(session: Session, account: Account) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = secrets.token_hex(5)  # 40 bits shown as xxxxx-xxxxx
        codes.append(f"{raw[:5]}-{raw[5:]}")
        session.add(RecoveryCode(account_id=account.id, code_hash=_hash(raw)))
    return codes


def _use_recovery_code(session: Session, account: Account, code: str) -> bool:
    if len(_normal(code)) != 10:
        return False
    row = session.scalar(select(RecoveryCode).where(RecoveryCode.account_id == account.id,
                                                    RecoveryCode.code_hash == _hash(code),
                                                    RecoveryCode.used_at.is_(None)))
    if row is None:
        return False
    row.used_at = utcnow()
    return True


def recovery_codes_left(session: Session, account_id: int) -> int:
    return len(session.scalars(select(RecoveryCode.id).where(RecoveryCode.account_id == account_id,
                                                            RecoveryCode.used_at.is_(None))).all())
