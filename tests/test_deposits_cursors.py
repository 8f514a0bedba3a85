"""Scan cursors: absent before the first scan, then the first unscanned block."""
from control_plane import db
from control_plane.deposits import cursors


def test_cursor_is_none_before_the_first_scan_then_advances(settings):
    with db.session_scope(settings) as session:
        assert cursors.next_block(session, "bsc") is None
        cursors.advance(session, "bsc", 100)
    with db.session_scope(settings) as session:
        assert cursors.next_block(session, "bsc") == 100
        cursors.advance(session, "bsc", 250)
    with db.session_scope(settings) as session:
        assert cursors.next_block(session, "bsc") == 250
        assert cursors.next_block(session, "polygon") is None
