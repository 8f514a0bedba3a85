"""The JSON API under /api: /api/healthz, and /api/v1/* for customers with their API key.

control_plane/app.py registers `api` and the error handling of every answer (`handle_errors`)."""
from __future__ import annotations

from flask import Blueprint, Flask, g
from werkzeug.exceptions import HTTPException

from .errors import ApiError, error_response
from .health import healthz
from .v1 import v1

api = Blueprint("api", __name__, url_prefix="/api")
api.add_url_rule("/healthz", view_func=healthz, methods=["GET"])
api.register_blueprint(v1)


def handle_errors(app: Flask) -> None:
    """Every error of the app, ours and Werkzeug's, as JSON; the request's session closed."""
    app.register_error_handler(ApiError, lambda error: error.response())
    app.register_error_handler(HTTPException, _http_error)
    app.teardown_request(_close_session)


def _http_error(error: HTTPException):
    """Werkzeug's errors (404, 405, …) in the OpenAI shape too: the control plane serves no HTML
    page yet, so no answer of it is an HTML error page."""
    return error_response(error.code, error.description, "invalid_request_error", error.name.lower().replace(" ", "_"))


def _close_session(_exc):
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
