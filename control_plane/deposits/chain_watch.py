"""Which chains are watched, the scan of each, and `tollgate chain watch`: every watched chain
scanned every TOLLGATE_CHAIN_POLL_SECONDS (TRON every TOLLGATE_TRON_POLL_SECONDS: TronGrid
counts requests against a daily quota) until SIGTERM / SIGINT.

A chain is watched when it is configured: BSC and Polygon when their TOLLGATE_<CHAIN>_RPC_URL is
set, TRON when TOLLGATE_XPUB_TRON is (its URL defaults to TronGrid). `tollgate up` runs the watch
as a child process only then. A scan that fails (the node is down after the backoff, the database
is away) is logged and tried again at the next round; nothing is skipped, the cursor stays.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from functools import partial

import redis
from sqlalchemy.exc import SQLAlchemyError

from .. import db, logs
from ..errors import ServiceError
from ..settings import Settings
from . import backoff
from .scan_report import ScanReport
from .tokens import CHAINS

log = logging.getLogger(__name__)

Scan = Callable[..., ScanReport]  # (*, from_block=None, to_block=None, progress=None)


def watched_chains(settings: Settings) -> list[str]:
    configured = {chain.chain for chain in settings.evm_chains if chain.rpc_url}
    if settings.xpub_tron:
        configured.add("tron")
    return [chain for chain in CHAINS if chain in configured]


def scanner(settings: Settings, chain: str) -> Scan:
    """The chain's scan. Creating an EVM chain's checks its USDT contract's decimals() (ServiceError
    when they disagree with the settings)."""
    if chain == "tron":
        from . import tron_watcher

        return partial(tron_watcher.scan, settings)
    from .evm_watcher import EvmWatcher

    return EvmWatcher(settings, chain).scan


def node_errors(chain: str) -> tuple[type[Exception], ...]:
    """The errors that mean the chain's node did not answer (after its client's backoff)."""
    if chain == "tron":
        from . import trongrid

        return trongrid.TronUnavailable, trongrid.TronApiError
    from .evm_rpc import RpcError

    return (RpcError,)


def _scan_once(chain: str, scan: Scan) -> None:
    try:
        report = scan()
    except node_errors(chain) as exc:
        log.warning("%s: scan stopped, its node did not answer: %s", chain, exc)
    except (SQLAlchemyError, redis.RedisError, ServiceError) as exc:
        log.error("%s: scan failed: %s", chain, logs.error_summary(exc))
    else:
        if report.found or report.credited or report.orphaned:
            log.info("%s: blocks %d..%d: %d new deposits, %d credited, %d orphaned", chain, report.from_block,
                     report.to_block, report.found, report.credited, report.orphaned)


def poll_seconds(settings: Settings, chain: str) -> int:
    return settings.tron_poll_seconds if chain == "tron" else settings.chain_poll_seconds


def watch(settings: Settings, stopping: threading.Event) -> None:
    scans = {chain: scanner(settings, chain) for chain in watched_chains(settings)}
    log.info("watching deposits on %s", ", ".join(scans) or "no chain (none is configured)")
    due = dict.fromkeys(scans, 0.0)
    while scans and not stopping.is_set():
        for chain, scan in scans.items():
            if due[chain] <= time.monotonic():
                _scan_once(chain, scan)
                due[chain] = time.monotonic() + poll_seconds(settings, chain)
        stopping.wait(max(0.0, min(due.values()) - time.monotonic()))


def run(settings: Settings) -> None:
    logs.configure(settings.log_level)
    stopping = backoff.STOPPING  # also ends a node's retries at once
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stopping.set())
    try:
        watch(settings, stopping)
    finally:
        db.dispose_engines()
