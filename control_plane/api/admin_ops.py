"""/api/admin/v1: the overview, deposits, the audit log and reconciliation."""
from __future__ import annotations

from .admin import admin_v1  # noqa: F401
