"""/api/admin/v1: accounts, their money, keys and suspension."""
from __future__ import annotations

from .admin import admin_v1  # noqa: F401
