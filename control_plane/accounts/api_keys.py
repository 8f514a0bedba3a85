"""Customer API keys. Only the SHA-256 of a key is stored; its plaintext is shown once (when it is
made, and when it is rotated: a new secret for the same key)."""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import db, logs
from ..errors import ServiceError
from ..hot import publish, redis_keys
from ..hot.connection import hget_many, shard
from ..models import Account, Alias, ApiKey, Model, Usage, utcnow
from ..settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "sk-tg-"
DISPLAY_PREFIX_LENGTH = 10
MAX_NAME = ApiKey.__table__.c.name.type.length
MAX_RATE = 2**31 - 1  # rpm and tpm are 32-bit integer columns
MAX_LIMIT_NANO = 2**63 - 1
MAX_ID = 2**31 - 1  # api_keys.id is a 32-bit integer column


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


@dataclass(frozen=True)
class KeyLimits:
    """What a key may do; None: no limit. Its spend limit (nano-USD, lifetime), rate limits, the
    model and alias names it may call (None: every model) and when it stops working."""

    spend_nano: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] | None = None
    expires_at: datetime | None = None


class InvalidKeyField(ServiceError):
    """A key setting that cannot be used; `field` is the setting (name, limit, rpm, tpm, models,
    expires_at), so a form can show the message next to it and the API can name it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def catalogue_names(session: Session) -> list[str]:
    """Every model and alias name a key may be allowed, sorted."""
    names = session.scalars(select(Model.name).union(select(Alias.name)))
    return sorted(names)


def parse_expiry(text: str) -> datetime:
    """'2030-01-31' (00:00 UTC that day), '2030-01-31T12:30', with seconds, 'Z' or an offset too:
    an aware UTC datetime. Times without an offset are UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidKeyField("expires_at", "give a date as YYYY-MM-DD or a UTC time as YYYY-MM-DDTHH:MM") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check_limits(spend_nano: int | None, rpm: int | None, tpm: int | None) -> None:
    """A key's spend limit and rate limits within their columns' bounds (None: none), else
    InvalidKeyField naming the one that is not."""
    if spend_nano is not None and not 0 <= spend_nano <= MAX_LIMIT_NANO:
        raise InvalidKeyField("limit", "a key's spend limit cannot be negative" if spend_nano < 0
                              else "a key's spend limit is too large")
    for field, rate in (("rpm", rpm), ("tpm", tpm)):
        if rate is not None and not 1 <= rate <= MAX_RATE:
            raise InvalidKeyField(field, f"a key's rate limits are from 1 to {MAX_RATE:,} per minute")


def _check(session: Session, name: str, limits: KeyLimits) -> None:
    if len(name) > MAX_NAME:
        raise InvalidKeyField("name", f"a key's name is at most {MAX_NAME} characters")
    check_limits(limits.spend_nano, limits.rpm, limits.tpm)
    if limits.models is not None:
        if not limits.models:
            raise InvalidKeyField("models", "allow at least one model, or leave the list out to allow every model")
        unknown = sorted(set(limits.models) - set(catalogue_names(session)))
        if unknown:
            raise InvalidKeyField("models", f"no model or alias is named {', '.join(map(repr, unknown))}")
    if limits.expires_at is not None and limits.expires_at <= utcnow():
        raise InvalidKeyField("expires_at", "the expiry must be in the future")


def add_key(session: Session, account: Account, plaintext: str, name: str = "", limits=KeyLimits(),
            cap_fallback_price: bool = False) -> ApiKey:
    """Store a key whose plaintext the caller chose (see demo.py); create_key makes a random one.
    cap_fallback_price: its at-cost requests a fallback route serves are charged at most the
    model's first route's cost."""
    _check(session, name, limits)
    key = ApiKey(
        account_id=account.id,
        name=name,
        key_hash=hash_key(plaintext),
        prefix=plaintext[:DISPLAY_PREFIX_LENGTH],
        limit_nano=limits.spend_nano,
        rpm=limits.rpm,
        tpm=limits.tpm,
        allowed_models=None if limits.models is None else json.dumps(sorted(set(limits.models))),
        expires_at=limits.expires_at,
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


def rotate_key(session: Session, key: ApiKey) -> tuple[str, str]:
    """A new random secret for an active key: the same id, limits, spend and history. Returns
    (the new plaintext, shown once; the old secret's hash, for publish.rotate_key to remove)."""
    if key.status != "active":
        raise ServiceError(f"key {key.id} is revoked; a revoked key cannot get a new secret")
    old_hash = key.key_hash
    plaintext = generate_key()
    key.key_hash = hash_key(plaintext)
    key.prefix = plaintext[:DISPLAY_PREFIX_LENGTH]
    key.rotated_at = utcnow()
    session.flush()
    return plaintext, old_hash


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


def owned_key(session: Session, account_id: int, key_id: int) -> ApiKey | None:
    """The account's key with this id; None for an unknown id and for another account's alike."""
    if not 0 < key_id <= MAX_ID:  # beyond the 32-bit column: PostgreSQL would refuse to compare
        return None
    key = session.get(ApiKey, key_id)
    return key if key is not None and key.account_id == account_id else None


def find_key(session: Session, plaintext: str) -> ApiKey | None:
    """The key with this plaintext, whatever its status."""
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))


def allowed_models(key: ApiKey) -> list[str] | None:
    """The names the key may call, sorted; None: every model."""
    return None if key.allowed_models is None else json.loads(key.allowed_models)


def is_expired(key: ApiKey, now: datetime | None = None) -> bool:
    return key.expires_at is not None and key.expires_at <= (now or utcnow())


def spent_nano(session: Session, settings: Settings, keys: list[ApiKey]) -> dict[int, int]:
    """key id -> what it has spent: Redis `spent` (usage counted the moment it happened); for a
    key Redis does not have, or when Redis cannot be reached, the SQL sum of its usage, which
    lags by the usage not drained yet."""
    live = hget_many(settings, [(redis_keys.key_state(shard(settings, key.account_id), key.id), "spent")
                                for key in keys])
    missing = [key.id for key, value in zip(keys, live, strict=True) if value is None]
    recorded = dict(session.execute(
        select(Usage.key_id, func.sum(Usage.cost_nano)).where(Usage.key_id.in_(missing)).group_by(Usage.key_id)
    ).all()) if missing else {}
    return {key.id: int(value) if value is not None else int(recorded.get(key.id) or 0)
            for key, value in zip(keys, live, strict=True)}


# What the console and /api/v1/keys do: change SQL, commit, then make it live in Redis. --------


def _publish_committed(settings: Settings, change) -> bool:
    """change(session) after the SQL transaction committed; False (logged) if Redis cannot take
    it: the change is saved, and `tollgate publish` makes it live once Redis answers."""
    try:
        with db.session_scope(settings) as session:
            change(session)
    except (redis.RedisError, ServiceError) as exc:
        log.error("key change saved but not published: %s", logs.error_summary(exc))
        return False
    return True


def create_for(settings: Settings, account_id: int, name: str, limits: KeyLimits) -> tuple[ApiKey, str, bool]:
    """A new key of the account, live: (the key, its plaintext, whether Redis has it).
    InvalidKeyField when a setting cannot be used."""
    with db.session_scope(settings) as session:
        key, plaintext = create_key(session, session.get(Account, account_id), name, limits)
    return key, plaintext, _publish_committed(settings, lambda session: publish.publish_key(session, settings, key))


def rotate_for(settings: Settings, account_id: int, key_id: int) -> tuple[ApiKey, str, bool] | None:
    """A new secret for the account's key (None: it has no such key): (the key, its new plaintext,
    whether Redis has it; until then the old secret still works)."""
    with db.session_scope(settings) as session:
        key = owned_key(session, account_id, key_id)
        if key is None:
            return None
        plaintext, old_hash = rotate_key(session, key)
    live = _publish_committed(settings, lambda session: publish.rotate_key(session, settings, key, old_hash))
    return key, plaintext, live


def revoke_for(settings: Settings, account_id: int, key_id: int) -> tuple[ApiKey, bool] | None:
    """Revoke the account's key (None: it has no such key): (the key, whether Redis knows)."""
    with db.session_scope(settings) as session:
        if owned_key(session, account_id, key_id) is None:
            return None
        key = revoke_key(session, key_id)
    return key, _publish_committed(settings, lambda _session: publish.revoke_key(settings, key))
