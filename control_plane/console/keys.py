"""Keys /console/keys: create, rotate, revoke."""
from __future__ import annotations
