"""The control plane's Prometheus gauges (`GET /metrics` of gunicorn, which nginx serves as
/metrics/control-plane to loopback or the bearer of TOLLGATE_METRICS_TOKEN): the usage drain's
backlog and lag per stream, the last reconciliation, deposits waiting per chain and each chain
watcher's lag, alert mails waiting, quarantined records. Read at each scrape — a few indexed SQL
counts and two Redis calls per usage stream — so every gunicorn process answers the same and
nothing is kept between scrapes. The request counters are the gateway nodes' own /metrics.
"""
from __future__ import annotations

import time

import redis
from flask import Blueprint, Response, current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from .. import db
from ..hot import connection, redis_keys
from ..models import ChainCursor, Deposit, Notice, ReconcileRun, UsageQuarantine, utcnow
from ..money import NANO_PER_USD
from ..settings import Settings

metrics = Blueprint("metrics", __name__)
PENDING_DEPOSITS = ("seen", "confirmed", "below_minimum")


class ControlPlaneCollector:
    def __init__(self, settings: Settings):
        self.settings = settings

    def collect(self):
        yield from self._drain()
        yield from self._sql()

    def _drain(self):
        backlog = GaugeMetricFamily("tollgate_drain_backlog", "Usage records in a stream not drained into SQL yet.",
                                    labels=["stream"])
        lag = GaugeMetricFamily("tollgate_drain_lag_seconds", "Age of the oldest record a usage stream holds.",
                                labels=["stream"])
        up = GaugeMetricFamily("tollgate_redis_up", "1 when Redis answered this scrape.")
        try:
            client = connection.client(self.settings)
            now_ms = time.time() * 1000
            for shard in range(self.settings.redis_shards):
                stream = redis_keys.usage_stream(shard)
                oldest = client.xrange(stream, count=1)
                backlog.add_metric([stream], client.xlen(stream))
                lag.add_metric([stream], max(0.0, (now_ms - _entry_ms(oldest[0][0])) / 1000) if oldest else 0.0)
            up.add_metric([], 1)
        except redis.RedisError:
            up.add_metric([], 0)
        yield from (backlog, lag, up)

    def _sql(self):
        try:
            with db.read_session(self.settings) as session:
                run = session.scalars(select(ReconcileRun).order_by(ReconcileRun.id.desc()).limit(1)).first()
                pending = dict(session.execute(select(Deposit.chain, func.count()).where(
                    Deposit.status.in_(PENDING_DEPOSITS)).group_by(Deposit.chain)).all())
                cursors = {cursor.chain: cursor.updated_at for cursor in session.scalars(select(ChainCursor))}
                unsent = session.scalar(select(func.count()).select_from(Notice).where(Notice.sent_at.is_(None)))
                quarantined = session.scalar(select(func.count()).select_from(UsageQuarantine))
        except SQLAlchemyError:
            yield _gauge("tollgate_database_up", "1 when the database answered this scrape.", 0)
            return
        yield _gauge("tollgate_database_up", "1 when the database answered this scrape.", 1)
        if run is not None:
            yield _gauge("tollgate_reconcile_ok", "1 when the last reconciliation found everything agreeing.",
                         int(run.ok))
            yield _gauge("tollgate_reconcile_drift_usd", "Σ |drift| of the accounts the last reconciliation "
                         "found drifting.", run.drift_nano / NANO_PER_USD)
            yield _gauge("tollgate_reconcile_age_seconds", "Seconds since the last reconciliation started.",
                         (utcnow() - run.started_at).total_seconds())
        deposits = GaugeMetricFamily("tollgate_deposits_pending", "Deposits seen but not credited yet.",
                                     labels=["chain"])
        for chain, count in sorted(pending.items()):
            deposits.add_metric([chain], count)
        yield deposits
        watcher = GaugeMetricFamily("tollgate_watcher_lag_seconds", "Seconds since a chain watcher last moved "
                                    "its cursor.", labels=["chain"])
        for chain, updated_at in sorted(cursors.items()):
            watcher.add_metric([chain], (utcnow() - updated_at).total_seconds())
        yield watcher
        yield _gauge("tollgate_notices_unsent", "Alert mails queued and not sent yet.", unsent)
        yield _gauge("tollgate_usage_quarantined", "Usage records set aside as unreadable (billed their hold).",
                     quarantined)


def _gauge(name: str, documentation: str, value) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _entry_ms(entry_id) -> int:
    """The milliseconds of a stream entry id ("1700000000000-0")."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


@metrics.get("/metrics")
def scrape():
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControlPlaneCollector(current_app.config["TOLLGATE_SETTINGS"]))
    return Response(generate_latest(registry), content_type="text/plain; version=0.0.4; charset=utf-8")
