"""What one chain scan did; every watcher (EVM, TRON) returns one from
`scan(settings, *, from_block=None, to_block=None, progress=None)`, where `progress(done, total)`
is called with the blocks scanned so far and the blocks this scan covers."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ScanReport:
    chain: str
    from_block: int  # first block scanned
    to_block: int  # last block scanned (inclusive); from_block - 1 when nothing was new
    found: int = 0  # deposits recorded for the first time
    credited: int = 0  # deposits credited to the ledger by this scan
    orphaned: int = 0  # deposits whose block left the chain in a re-org
