"""Customer API keys. Only the SHA-256 of a key is stored; its plaintext is shown once."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ServiceError
from ..models import Account, ApiKey, utcnow

KEY_PREFIX = "sk-tg-"
DISPLAY_PREFIX_LENGTH = 10


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


@dataclass(frozen=True)
class KeyLimits:
    """A key's spend limit (nano-USD, lifetime) and rate limits; None: unlimited."""

    spend_nano: int | None = None
    rpm: int | None = None
    tpm: int | None = None


def add_key(session: Session, account: Account, plaintext: str, name: str = "", limits=KeyLimits(),
            cap_fallback_price: bool = False) -> ApiKey:
    """Store a key whose plaintext the caller chose (see demo.py); create_key makes a random one.
    cap_fallback_price: its at-cost requests a fallback route serves are charged at most the
    model's first route's cost."""
    if limits.spend_nano is not None and limits.spend_nano < 0:
        raise ServiceError("a key's spend limit cannot be negative")
    if any(rate is not None and rate < 1 for rate in (limits.rpm, limits.tpm)):
        raise ServiceError("a key's rate limits are at least 1 per minute")
    key = ApiKey(
        account_id=account.id,
        name=name,
        key_hash=hash_key(plaintext),
        prefix=plaintext[:DISPLAY_PREFIX_LENGTH],
        limit_nano=limits.spend_nano,
        rpm=limits.rpm,
        tpm=limits.tpm,
        cap_fallback_price=cap_fallback_price,
    )
    session.add(key)
    session.flush()
    return key


def create_key(session: Session, account: Account, name: str = "", limits=KeyLimits(),
               cap_fallback_price: bool = False) -> tuple[ApiKey, str]:
    """A new random key; the plaintext is returned here and never again."""
    plaintext = generate_key()
    return add_key(session, account, plaintext, name, limits, cap_fallback_price), plaintext


def revoke_key(session: Session, key_id: int) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise ServiceError(f"no key with id {key_id}")
    if key.status != "revoked":
        key.status = "revoked"
        key.revoked_at = utcnow()
    return key


def list_keys(session: Session, account_id: int) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.id)))


def find_key(session: Session, plaintext: str) -> ApiKey | None:
    """The key with this plaintext, whatever its status."""
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))
