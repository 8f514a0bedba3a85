"""Scan cursors in SQL: the first block a chain watcher has not scanned yet.

Callers advance the cursor in the same transaction that records the deposits found below it, so
a crash either keeps both or neither: no block is skipped and none is credited twice.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from ..models import ChainCursor


def next_block(session: Session, chain: str) -> int | None:
    """The first unscanned block, or None before the chain's first scan."""
    cursor = session.get(ChainCursor, chain)
    return None if cursor is None else cursor.next_block


def advance(session: Session, chain: str, block: int) -> None:
    """Every block below `block` is scanned."""
    cursor = session.get(ChainCursor, chain)
    if cursor is None:
        session.add(ChainCursor(chain=chain, next_block=block))
    else:
        cursor.next_block = block
