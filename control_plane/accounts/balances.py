"""An account's balance as customers see it: the live Redis figure, else SQL's."""
from __future__ import annotations

import logging

import redis

from .. import logs
from ..hot import redis_keys
from ..hot.connection import client, shard
from ..models import Account
from ..money import nano_to_decimal
from ..settings import Settings

log = logging.getLogger(__name__)


def current_balance_nano(settings: Settings, account: Account) -> int:
    """Redis `bal` (usage debited the moment it happened). If Redis does not have the account or
    cannot be reached: the SQL balance, which lags by the usage not drained yet."""
    try:
        live = balance_nano(settings, account.id)
    except redis.RedisError as exc:
        log.warning("balance of account %s from SQL: %s", account.id, logs.error_summary(exc))
        live = None
    return account.balance_nano if live is None else live


def balance_nano(settings: Settings, account_id: int) -> int | None:
    """The live balance (usage already debited), or None if the account is not published."""
    value = client(settings).hget(redis_keys.account(shard(settings, account_id), account_id), "bal")
    return None if value is None else int(value)


def balance_document(nano: int) -> dict:
    """{"balance": 42.5, "balance_nano": 42500000000, "currency": "USD"} (render with exact_json)."""
    return {"balance": nano_to_decimal(nano), "balance_nano": nano, "currency": "USD"}
