"""/api/admin/v1: providers, models, routes and aliases."""
from __future__ import annotations

from .admin import admin_v1  # noqa: F401
