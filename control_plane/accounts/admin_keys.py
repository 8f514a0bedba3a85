"""Admin API keys (sk-tg-admin-…) for /api/admin/v1: separate from customer keys (never published
to the gateway, so they cannot call models), each read-write or read-only. Only the SHA-256 is
stored; the key is shown once."""
from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ServiceError
from ..models import Account, AdminApiKey, utcnow
from .api_keys import hash_key

KEY_PREFIX = "sk-tg-admin-"
DISPLAY_PREFIX_LENGTH = 16


def create(session: Session, owner: Account, name: str = "", read_only: bool = False) -> tuple[AdminApiKey, str]:
    """A new admin key of owner (an admin account) and its plaintext, to be shown once."""
    if not owner.is_admin:
        raise ServiceError(f"{owner.email} is not an admin account")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = AdminApiKey(account_id=owner.id, name=name.strip()[:200], key_hash=hash_key(plaintext),
                      prefix=plaintext[:DISPLAY_PREFIX_LENGTH], read_only=read_only)
    session.add(key)
    session.flush()
    return key, plaintext


def find(session: Session, plaintext: str) -> AdminApiKey | None:
    """The unrevoked admin key of an active admin account that plaintext is, or None."""
    if not plaintext.startswith(KEY_PREFIX):
        return None
    key = session.scalar(select(AdminApiKey).where(AdminApiKey.key_hash == hash_key(plaintext)))
    if key is None or key.revoked_at is not None:
        return None
    owner = session.get(Account, key.account_id)
    if owner is None or not owner.is_admin or owner.status != "active" or owner.deleted_at is not None:
        return None
    return key


def revoke(session: Session, key_id: int) -> AdminApiKey:
    key = session.get(AdminApiKey, key_id)
    if key is None:
        raise ServiceError(f"no admin key with id {key_id}")
    key.revoked_at = key.revoked_at or utcnow()
    return key


def list_keys(session: Session) -> list[AdminApiKey]:
    return list(session.scalars(select(AdminApiKey).order_by(AdminApiKey.id)))
