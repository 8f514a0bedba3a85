"""The customer console: server-rendered pages under /console/ and the public /models page.

Templates live in control_plane/templates/console/, assets in control_plane/static/ (nginx serves
them, and Debian's Chart.js, with long cache headers: proxy/static.conf). Every form carries a
CSRF token (Flask-WTF); a POST without it is refused with 403. Sessions: sessions.py. Each page's
views are in the module named for it; `register` attaches them all to the app.
"""
from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from flask import Blueprint, Flask, current_app, g, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect

from .. import crypto, money
from ..settings import REPO_ROOT

console = Blueprint("console", __name__, url_prefix="/console")
# Pages anyone may read without signing in (/models).
public = Blueprint("public", __name__)

STATIC_DIR = REPO_ROOT / "control_plane" / "static"
# Debian's libjs-chart.js, served by nginx under /static/vendor/chart.js/.
CHART_JS_DIR = Path("/usr/share/javascript/chart.js")
CHART_JS = "vendor/chart.js/chart.min.js"

csrf = CSRFProtect()


@console.before_request
def _check_csrf():
    """Every state-changing console request carries the session's CSRF token (a form's hidden
    csrf_token field, or an X-CSRFToken header); without it: 403."""
    csrf.protect()


def register(app: Flask) -> None:
    """The console's blueprints, its session cookie, CSRF protection and HTML error pages."""
    from . import views  # noqa: F401 (attaches the pages' views to the blueprints)

    settings = app.config["TOLLGATE_SETTINGS"]
    app.secret_key = crypto.derive(settings, b"tollgate console cookies").hex()
    app.config.update(
        SESSION_COOKIE_NAME="tollgate_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.console_base_url.startswith("https://"),
        # Only the console's forms are checked (its before_request); /api takes keys, not cookies.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session that holds it
        WTF_CSRF_SSL_STRICT=False,  # SameSite=Lax and the token already stop cross-site posts
    )
    csrf.init_app(app)
    app.jinja_env.globals.update(static_url=static_url, chart_js_url=lambda: static_url(CHART_JS))
    # {{ nano|usd }} → $0.000525 (exact); {{ moment|utc }} → 2025-01-31 12:00:00 UTC.
    app.jinja_env.filters.update(usd=money.format_usd, utc=lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S UTC"))
    app.context_processor(lambda: {"account": g.get("account")})
    app.register_blueprint(console)
    app.register_blueprint(public)
    app.register_error_handler(CSRFError, _csrf_refused)


def is_page_request() -> bool:
    """A request a browser shows as a page: the consoles' and /models, not their CSV downloads."""
    path = request.path
    return (path == "/models" or path.startswith(("/console/", "/admin/")) or path in ("/console", "/admin")) \
        and not path.endswith(".csv")


def error_page(status: int, title: str, message: str):
    return render_template("console/error.html", status=status, title=title, message=message), status


def _csrf_refused(_error: CSRFError):
    return error_page(403, "Form expired", "This form was not sent from this console, or its page is too old. "
                      "Go back, reload the page and try again.")


@cache
def _asset_version(name: str) -> str:
    path = STATIC_DIR / name
    if name.startswith("vendor/chart.js/"):
        path = CHART_JS_DIR / name.removeprefix("vendor/chart.js/")
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return "0"


def static_url(name: str) -> str:
    """/static/<name>?v=<content hash>: cached for a year, and a new file gets a new URL."""
    version = _asset_version(name) if not current_app.debug else "dev"
    return f"/static/{name}?v={version}"
