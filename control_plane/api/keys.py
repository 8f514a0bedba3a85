"""/api/v1/keys: the account's API keys, managed with one of them (as the console's Keys page).

- `GET /api/v1/keys`: the account's keys, newest first (paged like every /api/v1 list).
- `POST /api/v1/keys` `{"name", "limit", "rpm", "tpm", "models", "expires_at"}` (all optional) →
  201, the key with its plaintext `key`, shown this once.
- `DELETE /api/v1/keys/<id>`: revoke it (refused by the gateway within 2 s).
- `POST /api/v1/keys/<id>/rotate`: a new secret for it (same id, limits, spend, history), shown once.

Another account's key id gets the answer an unknown id gets (`key_not_found`), so ids leak nothing.
"""
from __future__ import annotations

from decimal import Decimal

from flask import g
from sqlalchemy import select

from ..accounts import api_keys
from ..accounts.api_keys import InvalidKeyField, KeyLimits
from ..errors import ServiceError
from ..models import ApiKey, utc_timestamp
from ..money import nano_to_decimal, usd_to_nano
from . import context
from .errors import ApiError, bad_parameter
from .v1 import v1

FIELDS = ("name", "limit", "rpm", "tpm", "models", "expires_at")


def key_item(key: ApiKey, spent_nano: int) -> dict:
    """A key as the API shows it: never its secret (only create and rotate answer with that)."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "status": key.status,
        "expired": api_keys.is_expired(key),
        "limit": None if key.limit_nano is None else nano_to_decimal(key.limit_nano),
        "limit_nano": key.limit_nano,
        "spent": nano_to_decimal(spent_nano),
        "spent_nano": spent_nano,
        "rpm": key.rpm,
        "tpm": key.tpm,
        "models": api_keys.allowed_models(key),
        "expires_at": key.expires_at and utc_timestamp(key.expires_at),
        "created_at": utc_timestamp(key.created_at),
        "rotated_at": key.rotated_at and utc_timestamp(key.rotated_at),
        "revoked_at": key.revoked_at and utc_timestamp(key.revoked_at),
    }


def _items(keys: list[ApiKey]) -> list[dict]:
    spent = api_keys.spent_nano(context.session(), context.settings(), keys)
    return [key_item(key, spent[key.id]) for key in keys]


@v1.get("/keys")
def key_list():
    rows, has_more, next_before = context.page(select(ApiKey).where(ApiKey.account_id == g.account.id), ApiKey.id)
    return {"data": _items([key for key, _cursor in rows]), "has_more": has_more, "next_before": next_before}


@v1.post("/keys")
def key_create():
    name, limits = _key_request()
    try:
        key, plaintext, live = api_keys.create_for(context.settings(), g.account.id, name, limits)
    except InvalidKeyField as exc:
        raise ApiError("invalid_parameter", detail=f"'{exc.field}': {exc}.") from None
    return {**_items([key])[0], "key": plaintext, "live": live}, 201


@v1.delete("/keys/<int:key_id>")
def key_revoke(key_id: int):
    revoked = api_keys.revoke_for(context.settings(), g.account.id, key_id)
    if revoked is None:
        raise ApiError("key_not_found", key_id=key_id)
    key, live = revoked
    return {**_items([key])[0], "live": live}


@v1.post("/keys/<int:key_id>/rotate")
def key_rotate(key_id: int):
    try:
        rotated = api_keys.rotate_for(context.settings(), g.account.id, key_id)
    except ServiceError as exc:  # a revoked key
        raise ApiError("invalid_request", detail=f"{exc}.") from None
    if rotated is None:
        raise ApiError("key_not_found", key_id=key_id)
    key, plaintext, live = rotated
    return {**_items([key])[0], "key": plaintext, "live": live}


def _key_request() -> tuple[str, KeyLimits]:
    """The name and limits of a create request's JSON body; each field optional, null as absent."""
    body = context.json_object('{"name": "ci", "limit": "5.00", "models": ["gpt-4o"]}', FIELDS)
    name = body.get("name") or ""
    if not isinstance(name, str):
        raise bad_parameter("name", "a string")
    return name.strip(), KeyLimits(spend_nano=parse_limit(body.get("limit")), rpm=_rate(body, "rpm"),
                                   tpm=_rate(body, "tpm"), models=_models(body.get("models")),
                                   expires_at=_expiry(body.get("expires_at")))


def parse_limit(raw) -> int | None:
    """A key's spend limit from a JSON body (USD text or an exact number; null: none) in nano-USD,
    else invalid_parameter naming `limit` (the customer and the admin API both read it)."""
    if raw is None:
        return None
    wrong = bad_parameter("limit", 'a USD amount such as "5.00" (at most 9 decimals), or null for none')
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
        raise wrong
    try:
        return usd_to_nano(raw)
    except (ValueError, ArithmeticError):
        raise wrong from None


def _rate(body: dict, name: str) -> int | None:
    raw = body.get(name)
    if raw is not None and (isinstance(raw, bool) or not isinstance(raw, int)):
        raise bad_parameter(name, "an integer per minute, or null for none")
    return raw


def _models(raw) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        raise bad_parameter("models", "an array of model or alias names, or null for every model")
    return tuple(raw)


def _expiry(raw):
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise bad_parameter("expires_at", 'a UTC time such as "2030-01-31T12:00:00Z" or a date, or null for never')
    try:
        return api_keys.parse_expiry(raw)
    except InvalidKeyField as exc:
        raise ApiError("invalid_parameter", detail=f"'expires_at': {exc}.") from None
