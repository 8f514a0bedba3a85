"""The Overview page (/admin/): traffic, money and health at a glance."""
from __future__ import annotations

from flask import render_template

from . import admin
from .sessions import admin_required


@admin.get("/")
@admin_required
def overview():
    return render_template("admin/overview.html", nav="overview")
