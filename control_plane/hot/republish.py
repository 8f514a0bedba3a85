"""Everything SQL knows, published to a fresh or restarted Redis."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import ApiKey, Model
from ..settings import Settings
from . import redis_keys
from .connection import client
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
    redis = client(settings)
    redis.set(redis_keys.REDIS_RUN, redis.info("server")["run_id"])  # what it has agrees with SQL
    redis.set(redis_keys.PUBLISHED, "1")


def republish_if_lost(session: Session, settings: Settings) -> bool:
    """publish_all when Redis came back without its data; True if it did."""
    if client(settings).exists(redis_keys.PUBLISHED):
        return False
    publish_all(session, settings)
    return True
