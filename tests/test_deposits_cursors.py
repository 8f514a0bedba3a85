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


def test_a_scan_under_way_never_moves_a_cursor_a_rescan_moved_back(settings):
    """A rescan moves the cursor back while a scan is recording blocks above it: the scan's steps
    leave the cursor where the rescan put it (those blocks get scanned again), on TRON and EVM."""
    from control_plane.deposits import evm_watcher, tron_watcher

    with db.session_scope(settings) as session:
        cursors.advance(session, "tron", 100)  # the rescan's doing; the scan was at 300
        cursors.advance(session, "bsc", 100)
    tron_watcher._record(settings, None, [], {}, (), 300, 399)
    watcher = evm_watcher.EvmWatcher.__new__(evm_watcher.EvmWatcher)
    watcher.settings, watcher.chain = settings, "bsc"
    watcher._record([], {}, 300, 400)
    with db.session_scope(settings) as session:
        assert (cursors.next_block(session, "tron"), cursors.next_block(session, "bsc")) == (100, 100)
    tron_watcher._record(settings, None, [], {}, (), 100, 199)  # the rescan's own first step
    watcher._record([], {}, 100, 200)
    with db.session_scope(settings) as session:
        assert (cursors.next_block(session, "tron"), cursors.next_block(session, "bsc")) == (200, 200)
