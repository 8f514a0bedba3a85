"""The admin console: server-rendered pages under /admin/ for admins signed in with their
password and a second factor (TOTP). Templates in control_plane/templates/admin/, the console's
stylesheet and forms. Every POST carries a CSRF token, as in the customer console.

Sign-in: signin.py; the decorator every page takes: sessions.py; each page's views in the module
named for it (views.py imports them all). `register` attaches them to the app.
"""
from __future__ import annotations

from flask import Blueprint, Flask, g, render_template

from ..console import csrf

admin = Blueprint("admin", __name__, url_prefix="/admin")


@admin.before_request
def _check_csrf():
    csrf.protect()


@admin.context_processor
def _signed_in_admin() -> dict:
    """Templates show the admin nav and sign-out form to a signed-in admin (admin_required sets g.admin)."""
    return {"admin": g.get("admin")}


def register(app: Flask) -> None:
    from . import views  # noqa: F401 (attaches the pages' views to the blueprint)

    app.register_blueprint(admin)


def error_page(status: int, title: str, message: str):
    return render_template("admin/error.html", status=status, title=title, message=message), status
