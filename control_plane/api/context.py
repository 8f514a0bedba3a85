"""What every /api/v1 view needs from its request: the settings, a read-only session, the
account of the API key it came with, and pagination. Used by api/v1.py and deposits/api.py."""
from __future__ import annotations

import json
from decimal import Decimal

from flask import current_app, g, request
from sqlalchemy.orm import Session

from .. import db
from ..accounts import api_keys
from ..models import utcnow
from .errors import ApiError, bad_parameter

DEFAULT_PAGE = 20
MAX_PAGE = 100
MAX_ID = 2**63 - 1


def settings():
    return current_app.config["TOLLGATE_SETTINGS"]


def session() -> Session:
    """The request's read-only session (closed at teardown; the API never writes)."""
    if "db_session" not in g:
        g.db_session = db.read_session(settings())
    return g.db_session


def authenticate() -> None:
    """Before every customer view: `Authorization: Bearer <key>` or `x-api-key: <key>`; sets
    g.account."""
    presented = presented_key()
    if not presented:
        raise ApiError("missing_api_key")
    key = api_keys.find_key(session(), presented)
    # Unknown, revoked, or of a deleted account: one answer, which tells a guesser nothing.
    if key is None or key.status != "active" or key.account.status == "disabled":
        raise ApiError("invalid_api_key")
    # As the gateway answers it: the holder of the key learns why it stopped working.
    if key.account.status == "suspended":
        raise ApiError("account_suspended")
    # As the gateway answers it (lua/tollgate/auth.lua): the holder of the key learns it expired.
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise ApiError("api_key_expired")
    g.account = key.account


def presented_key() -> str:
    """The key of `Authorization: Bearer <key>`, else of `x-api-key` (as the hot path takes it),
    surrounding whitespace ignored; "" if neither has one."""
    parts = request.headers.get("Authorization", "").split(None, 1)
    if len(parts) == 2 and parts[0].lower() == "bearer" and parts[1].strip():
        return parts[1].strip()
    return request.headers.get("x-api-key", "").strip()


def json_object(example: str, fields: tuple[str, ...] | None = None) -> dict:
    """The request's body as a JSON object, its numbers exact (Decimal, never floats): else
    invalid_request showing `example`. With `fields`, a field outside them is invalid_parameter
    (the message lists them in the order given)."""
    try:
        body = json.loads(request.get_data() or b"{}", parse_float=Decimal)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise ApiError("invalid_request", detail=f"The body must be a JSON object, e.g. {example}.")
    unknown = sorted(set(body) - set(fields)) if fields is not None else []
    if unknown:
        raise bad_parameter(unknown[0], f"one of {', '.join(fields)} (not a field of this request)")
    return body


def page(statement, cursor_column):
    """Newest first by cursor_column, `limit` rows (?limit=, ?before= the previous page's
    next_before). Each row ends with its cursor value; next_before is None on the last page."""
    limit = _int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    before = before_arg()
    statement = statement.add_columns(cursor_column)
    if before is not None:
        statement = statement.where(cursor_column < before)
    rows = session().execute(statement.order_by(cursor_column.desc()).limit(limit + 1)).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    return rows, has_more, rows[-1][-1] if has_more else None


def before_arg() -> int | None:
    """?before=, the cursor of the page asked for (None: the newest), validated."""
    return _int_arg("before", None, 1, MAX_ID)


def _int_arg(name: str, default: int | None, minimum: int, maximum: int) -> int | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= maximum:
        raise bad_parameter(name, f"an integer from {minimum} to {maximum}")
    return int(raw)
