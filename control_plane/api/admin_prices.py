"""/api/admin/v1: price sync and the price changes it held for approval."""
from __future__ import annotations

from .admin import admin_v1  # noqa: F401
