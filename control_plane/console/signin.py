"""Sign up, log in, log out, email verification and password reset."""
from __future__ import annotations
