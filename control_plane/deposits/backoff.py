"""The pause between a chain node's retries (trongrid.py, evm_rpc.py). It ends at once when the
chain watcher is told to stop (SIGTERM: chain_watch.run sets STOPPING), so a watcher whose node
is down stops in a moment instead of sleeping out its backoff."""
from __future__ import annotations

import threading

STOPPING = threading.Event()


def pause(seconds: float) -> bool:
    """Wait `seconds`; True when the watcher is stopping (the caller gives its retries up)."""
    return STOPPING.wait(seconds)
