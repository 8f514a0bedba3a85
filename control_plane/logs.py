"""Logging: one line per event on stderr; never secrets, prompt text or SQL parameters."""
from __future__ import annotations

import logging
import sys

from sqlalchemy.exc import DBAPIError


def configure(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def error_summary(exc: BaseException) -> str:
    """The error's type and first line. A database error is reported by the driver's message
    alone: SQLAlchemy's own text carries the statement's parameters."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
