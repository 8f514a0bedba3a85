"""`tollgate worker`: drains usage into SQL and keeps Redis in step with it.

Besides the drain, every few seconds: correct what a restarted Redis lost, re-apply unpublished
credits, publish balances missing from Redis, return expired leases, claim entries of dead
consumers, replay the usage journal, issue the invoices and credit notes of payments and refunds
that have none (deposits the chain watchers credit, payments from before invoicing), send queued
alert mails; every minute: re-publish providers (their hosts' addresses change), look for
balances and key spends that crossed their alert thresholds; every hour: expire unused top-up
credit (when TOLLGATE_CREDIT_EXPIRY_DAYS is set); every TOLLGATE_PRICE_SYNC_HOURS, when
TOLLGATE_PRICE_SYNC_SOURCE is set: sync routes' costs from that price list (catalog/price_sync.py; in a thread of its own, so a slow list never
holds up the drain). SIGTERM / SIGINT stop it after the current batch.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

import redis
from sqlalchemy.exc import SQLAlchemyError

from .. import db, logs
from ..accounts import alerts, notices
from ..billing import credit_expiry, invoices, restart_repair
from ..billing.journal_replay import JournalReplay
from ..billing.usage_drain import UsageDrain
from ..catalog import price_sync
from ..hot import connection, credits, publish, republish
from ..hot.lease_reaper import LeaseReaper
from ..settings import Settings

log = logging.getLogger(__name__)

BLOCK_MS = 1000
HOUSEKEEPING_SECONDS = 5
PROVIDER_REFRESH_SECONDS = 60
CREDIT_EXPIRY_SECONDS = 3600
RETRY_SECONDS = 1


class Worker:
    def __init__(self, settings: Settings, consumer: str | None = None):
        self.settings = settings
        self.drain = UsageDrain(settings, consumer or f"{socket.gethostname()}-{os.getpid()}")
        self.reaper = LeaseReaper(connection.client(settings), settings.redis_shards)
        self.journal = JournalReplay(settings)
        self._housekeeping_due = 0.0
        self._provider_refresh_due = time.monotonic() + PROVIDER_REFRESH_SECONDS
        self._credit_expiry_due = time.monotonic()  # the first run soon after the start
        self._price_sync_due = time.monotonic()  # the first sync soon after the start
        self.price_sync: threading.Thread | None = None

    def housekeeping(self) -> None:
        self.drain.record(self.drain.claim_stale())
        with db.session_scope(self.settings) as session:
            if republish.republish_if_lost(session, self.settings):
                log.warning("Redis had lost its data: published everything again from SQL")
            credits.apply_unpublished(session, self.settings)
            publish.publish_missing_accounts(session, self.settings)
        for correction in restart_repair.repair_if_restarted(self.settings):
            log.warning("Redis restarted without its last writes: corrected %s to agree with SQL",
                        correction.describe())
        self.reaper.reap()
        self.journal.run_once()
        invoices.issue_pending_now(self.settings)
        notices.deliver_pending(self.settings)

    def run(self, stopping: threading.Event) -> None:
        self.drain.ensure_groups()
        while not stopping.is_set():
            try:
                self._run_due_tasks()
                self.drain.record(self.drain.read(BLOCK_MS))
            except (redis.RedisError, SQLAlchemyError) as exc:
                log.error("%s; retrying in %s s", logs.error_summary(exc), RETRY_SECONDS)
                self.drain.reread_pending()
                stopping.wait(RETRY_SECONDS)
                try:
                    self.drain.ensure_groups()  # Redis may have come back empty
                except redis.RedisError:
                    pass

    def _run_due_tasks(self) -> None:
        now = time.monotonic()
        if now >= self._housekeeping_due:
            self._housekeeping_due = now + HOUSEKEEPING_SECONDS
            self.housekeeping()
        if now >= self._provider_refresh_due:
            self._provider_refresh_due = now + PROVIDER_REFRESH_SECONDS
            with db.session_scope(self.settings) as session:
                publish.publish_providers(session, self.settings)
            with db.session_scope(self.settings) as session:
                alerts.check(session, self.settings)
        if self.settings.credit_expiry_days and now >= self._credit_expiry_due:
            self._credit_expiry_due = now + CREDIT_EXPIRY_SECONDS
            report = credit_expiry.run(self.settings)
            if report.deferred:
                log.warning("credit expiry: %s", report)
            elif report.expired_nano or report.notices:
                log.info("credit expiry: %s", report)
        if self.settings.price_sync_source and now >= self._price_sync_due:
            self._price_sync_due = now + self.settings.price_sync_hours * 3600
            self._start_price_sync()

    def _start_price_sync(self) -> None:
        """periodic_sync in a thread, unless the last one is still running (it logs its outcome
        and never raises)."""
        if self.price_sync is not None and self.price_sync.is_alive():
            log.warning("the price sync started %s h ago is still running; not starting another",
                        self.settings.price_sync_hours)
            return
        self.price_sync = threading.Thread(target=price_sync.periodic_sync, args=(self.settings,), name="price-sync",
                                           daemon=True)
        self.price_sync.start()


def replay_journal(settings: Settings, follow: bool = False) -> int:
    """Replay this machine's usage journal once, or (follow) every HOUSEKEEPING_SECONDS until
    SIGTERM / SIGINT, riding out Redis and database outages; the records replayed."""
    replay = JournalReplay(settings)
    if not follow:
        return replay.run_once()
    logs.configure(settings.log_level)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stopping.set())
    replayed = 0
    while not stopping.is_set():
        try:
            replayed += replay.run_once()
        except (redis.RedisError, SQLAlchemyError) as exc:
            log.error("journal replay: %s; retrying in %s s", logs.error_summary(exc), HOUSEKEEPING_SECONDS)
        stopping.wait(HOUSEKEEPING_SECONDS)
    db.dispose_engines()
    return replayed


def run(settings: Settings, consumer: str | None = None) -> None:
    logs.configure(settings.log_level)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stopping.set())
    worker = Worker(settings, consumer)
    log.info("usage worker %s started on %s shards", worker.drain.consumer, settings.redis_shards)
    try:
        worker.run(stopping)
    finally:
        db.dispose_engines()
    log.info("usage worker %s stopped", worker.drain.consumer)
