"""Everything SQL knows, published to a fresh or restarted Redis."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Alias, ApiKey, Model
from ..settings import Settings
from . import redis_keys
from .connection import client, pipeline_across_slots, run_id
from .credits import apply_unpublished
from .publish import (
    publish_key,
    publish_missing_accounts,
    publish_model,
    publish_providers,
)


def publish_all(session: Session, settings: Settings) -> None:
    """Everything SQL knows, for a fresh or restarted Redis (used at start-up)."""
    publish_providers(session, settings)
    for model in session.scalars(select(Model).order_by(Model.id)):
        publish_model(session, settings, model)
    publish_missing_accounts(session, settings)
    for key in session.scalars(select(ApiKey).order_by(ApiKey.id)):
        publish_key(session, settings, key)
    apply_unpublished(session, settings)
    remove_stale(session, settings)
    redis = client(settings)
    redis.set(redis_keys.REDIS_RUN, run_id(settings))  # what it has agrees with SQL
    redis.set(redis_keys.PUBLISHED, "1")


def republish_if_lost(session: Session, settings: Settings) -> bool:
    """publish_all when Redis came back without its data; True if it did."""
    if client(settings).exists(redis_keys.PUBLISHED):
        return False
    publish_all(session, settings)
    return True


SCAN_PAGE = 1000


def remove_stale(session: Session, settings: Settings) -> int:
    """Delete what Redis still has that SQL no longer does — the look-up of a key's old secret
    whose rotation could not reach Redis, a removed alias — so a secret rotated or a name removed
    while Redis was away stops working once `tollgate publish` (or `up`) runs. How many it deleted."""
    redis = client(settings)
    stale = []
    prefix = redis_keys.apikey("")
    page: list[str] = []
    for name in redis.scan_iter(match=prefix + "*", count=SCAN_PAGE):
        page.append(name)
        if len(page) == SCAN_PAGE:
            stale += _unknown_lookups(session, page, prefix)
            page = []
    stale += _unknown_lookups(session, page, prefix)
    names = set(session.scalars(select(Model.name))) | set(session.scalars(select(Alias.name)))
    gone = [name for name in redis.smembers(redis_keys.MODELS) if name not in names]
    stale += [redis_keys.model(name) for name in gone]
    pipe = pipeline_across_slots(settings)
    for name in stale:
        pipe.delete(name)
    if gone:
        pipe.srem(redis_keys.MODELS, *gone)
    pipe.execute()
    return len(stale)


def _unknown_lookups(session: Session, names: list[str], prefix: str) -> list[str]:
    """The look-up hashes among names whose key hash no key in SQL has."""
    hashes = {name[len(prefix):]: name for name in names}
    if not hashes:
        return []
    known = set(session.scalars(select(ApiKey.key_hash).where(ApiKey.key_hash.in_(hashes))))
    return [name for key_hash, name in hashes.items() if key_hash not in known]
