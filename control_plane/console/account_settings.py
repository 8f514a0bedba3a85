"""Settings: change password (ends other sessions), change email (verified), delete account."""
from __future__ import annotations
