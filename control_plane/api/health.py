"""GET /api/healthz: 200 when SQL and Redis both answer, else 503 naming the one that did not."""
from __future__ import annotations

import redis
from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .. import db
from ..hot import connection


def healthz():
    settings = current_app.config["TOLLGATE_SETTINGS"]
    checks = {}
    try:
        with db.read_session(settings) as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError:
        checks["database"] = "unavailable"
    try:
        connection.ping(settings)
        checks["redis"] = "ok"
    except redis.RedisError:
        checks["redis"] = "unavailable"
    healthy = all(state == "ok" for state in checks.values())
    return {"status": "ok" if healthy else "unavailable", **checks}, 200 if healthy else 503
