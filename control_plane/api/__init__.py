"""The JSON API under /api: /api/healthz, /api/v1/* for customers with their API key, and
/api/admin/v1/* for admins with an admin API key.

control_plane/app.py registers `api` and the error handling of every answer (`handle_errors`)."""
from __future__ import annotations

from flask import Blueprint, Flask, g, request
from werkzeug.exceptions import HTTPException

from ..console import error_page, is_page_request
from . import keys  # noqa: F401 (its views attach to v1: /api/v1/keys)
from .admin import admin_v1
from .errors import ApiError
from .health import healthz
from .v1 import v1

api = Blueprint("api", __name__, url_prefix="/api")
api.add_url_rule("/healthz", view_func=healthz, methods=["GET"])
api.register_blueprint(v1)
api.register_blueprint(admin_v1)


def handle_errors(app: Flask) -> None:
    """Every error of the app, ours and Werkzeug's, as JSON; the request's session closed."""
    app.register_error_handler(ApiError, lambda error: error.response())
    app.register_error_handler(HTTPException, _http_error)
    app.teardown_request(_close_session)


# The catalogue code of each status Werkzeug raises here: routing (404, 405) and a view that
# failed (500, Flask's InternalServerError); any other would be a view's mistake, answered as one.
HTTP_ERRORS = {404: "path_not_found", 405: "method_not_allowed", 500: "internal_error"}
# Methods Werkzeug allows on every route that takes GET: not worth naming in a 405.
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}


# What a console page says for each status Werkzeug raises there.
PAGE_ERRORS = {404: ("Not found", "There is no such page, or it is not yours."),
               405: ("Not allowed", "This page cannot be used that way."),
               500: ("Something went wrong", "The console could not answer. Try again in a moment.")}


def _http_error(error: HTTPException):
    """Werkzeug's errors from the catalogue too, as JSON; a console page's as an HTML page. The
    request id is the one nginx gives every request."""
    if is_page_request():
        title, message = PAGE_ERRORS.get(error.code, PAGE_ERRORS[500])
        return error_page(error.code if error.code in PAGE_ERRORS else 500, title, message)
    # A 405 names the methods its route takes.
    allowed = sorted(set(getattr(error, "valid_methods", None) or ()) - IMPLICIT_METHODS)
    return ApiError(HTTP_ERRORS.get(error.code, "internal_error"), method=request.method, path=request.path,
                    allowed=" or ".join(allowed), request_id=request.headers.get("X-Request-Id")).response()


def _close_session(_exc):
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
