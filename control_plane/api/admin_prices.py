"""/api/admin/v1: price sync and the price changes it held for approval (catalog/price_sync.py).

- `GET /prices/held` (pending, oldest first; `?state=decided` for the recently approved or
  rejected ones): each hold with its route, reason and every class now and proposed.
- `POST /prices/held/<id>/approve` applies it as the route's new cost version (its source
  "sync <list> (approved by <admin>)"); `POST /prices/held/<id>/reject` leaves the cost as it is.
- `POST /prices/sync` `{"source", "format", "apply", "add_new", "provider"}`: the diff per route
  and class, as `tollgate prices sync --json` prints it; with "apply": true it is applied (held
  where a guardrail says so). The source is an http(s) URL: files on the server are the CLI's.

Prices are USD per 1M tokens, exact, with their `_nano` twins; a class's `current`/`proposed` is
null where it has no price of its own (`*_charged` is then its fallback's).
"""
from __future__ import annotations

from flask import g, request

from .. import db
from ..catalog import price_sync
from ..errors import ServiceError
from . import context
from .admin import admin_v1
from .errors import ApiError, bad_parameter

SYNC_EXAMPLE = '{"source": "https://openrouter.ai/api/v1/models", "format": "openrouter", "apply": false}'


@admin_v1.get("/prices/held")
def held_prices():
    state = request.args.get("state", "pending")
    if state not in ("pending", "decided"):
        raise bad_parameter("state", "'pending' or 'decided'")
    session = context.session()
    return {"data": [price_sync.hold_view(session, hold).as_dict()
                     for hold in price_sync.holds(session, pending=state == "pending")]}


@admin_v1.post("/prices/held/<int:hold_id>/approve")
def approve_held_price(hold_id: int):
    settings = context.settings()
    try:
        with db.session_scope(settings) as session:
            hold, version = price_sync.approve(session, hold_id, g.admin.email)
            model_id = version.model_id
            item = price_sync.hold_view(session, hold).as_dict()
    except price_sync.HoldNotFound as exc:
        raise ApiError("not_found", detail=_sentence(exc)) from None
    except ServiceError as exc:
        raise ApiError("invalid_request", detail=_sentence(exc)) from None
    error = price_sync.publish_models(settings, [model_id])
    return {**item, "cost_version_id": version.id, "published": error is None, "publish_error": error}


@admin_v1.post("/prices/held/<int:hold_id>/reject")
def reject_held_price(hold_id: int):
    try:
        with db.session_scope(context.settings()) as session:
            hold = price_sync.reject(session, hold_id)
            return price_sync.hold_view(session, hold).as_dict()
    except price_sync.HoldNotFound as exc:
        raise ApiError("not_found", detail=_sentence(exc)) from None
    except ServiceError as exc:
        raise ApiError("invalid_request", detail=_sentence(exc)) from None


@admin_v1.post("/prices/sync")
def sync_prices():
    body = context.json_object(SYNC_EXAMPLE)
    source = body.get("source")
    if not isinstance(source, str) or not source.strip().startswith(("http://", "https://")):
        raise bad_parameter("source", "the price list's http(s) URL")
    fmt = body.get("format", context.settings().price_sync_format)
    if fmt not in price_sync.FORMATS:
        raise bad_parameter("format", " or ".join(f"'{name}'" for name in price_sync.FORMATS))
    flags = {}
    for name in ("apply", "add_new"):
        flags[name] = body.get(name, False)
        if not isinstance(flags[name], bool):
            raise bad_parameter(name, "true or false")
    provider = body.get("provider")
    if (provider is not None or flags["add_new"]) and not isinstance(provider, str):
        raise bad_parameter("provider", "the name of the provider that serves the models add_new adds")
    try:
        report = price_sync.sync(context.settings(), source, fmt, flags["apply"], flags["add_new"], provider)
    except price_sync.SourceError as exc:
        raise ApiError("invalid_request", detail=f"The price list could not be read, so nothing changed: {exc}.") \
            from None
    except ServiceError as exc:  # an unknown provider
        raise ApiError("invalid_request", detail=_sentence(exc)) from None
    return report.as_dict()


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return f"{text[:1].upper()}{text[1:]}."
