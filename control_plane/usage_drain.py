"""The usage drain: moves usage records from the Redis streams into SQL, each exactly once.

Per batch: one SQL transaction with the usage rows and their ledger transactions, committed
before the entries are XACKed and XDELed (an entry holds one settlement batch's records). A record SQL already has (delivered twice, or claimed
from a consumer that died after committing) is skipped and acknowledged. A record that cannot be
recorded (malformed, unknown key) is logged and left pending, so nothing is lost unseen.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import redis
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from . import db, hot_state, ledger, pricing, redis_keys, usage_records
from .models import ApiKey, PriceVersion, Usage
from .settings import Settings
from .usage_records import UsageRecord

log = logging.getLogger(__name__)

GROUP = redis_keys.CONSUMER_GROUP
BATCH = 500
CLAIM_IDLE_MS = 60_000
PENDING = "0"  # XREADGROUP id: this consumer's delivered, unacknowledged entries
NEW = ">"  # XREADGROUP id: entries never delivered to the group


@dataclass(frozen=True)
class Entry:
    stream: str
    entry_id: str
    fields: dict[str, str]  # empty if the entry was deleted while pending


class UsageDrain:
    def __init__(self, settings: Settings, consumer: str):
        self.settings = settings
        self.consumer = consumer
        self.redis: redis.Redis = hot_state.client(settings)
        self.streams = [redis_keys.usage_stream(shard) for shard in range(settings.redis_shards)]
        self._cursors: dict[str, str] = {}
        self.reread_pending()

    def ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def reread_pending(self) -> None:
        """Walk this consumer's pending entries again first (at start and after a failure)."""
        self._cursors = {stream: PENDING for stream in self.streams}

    def read(self, block_ms: int) -> list[Entry]:
        """The next batch: this consumer's pending entries first, then new ones (waiting up to
        block_ms for them)."""
        while True:
            walking = [stream for stream, cursor in self._cursors.items() if cursor != NEW]
            response = self.redis.xreadgroup(
                GROUP, self.consumer, dict(self._cursors), count=BATCH, block=None if walking else block_ms
            )
            messages = {stream: batch for stream, batch in response or []}
            for stream in walking:
                batch = messages.get(stream)
                self._cursors[stream] = batch[-1][0] if batch else NEW
            entries = [
                Entry(stream, entry_id, fields or {})
                for stream, batch in messages.items()
                for entry_id, fields in batch
            ]
            if entries or not walking:
                return entries

    def claim_stale(self) -> list[Entry]:
        """Entries another consumer took and has not acknowledged for a minute (it died)."""
        entries = []
        for stream in self.streams:
            _next, claimed, *_deleted = self.redis.xautoclaim(
                stream, GROUP, self.consumer, CLAIM_IDLE_MS, start_id="0-0", count=BATCH
            )
            entries += [Entry(stream, entry_id, fields or {}) for entry_id, fields in claimed]
        return entries

    def record(self, entries: list[Entry]) -> int:
        """Write the entries to SQL, commit, then XACK + XDEL them; how many were new."""
        if not entries:
            return 0
        finished: list[Entry] = []
        parsed: list[tuple[Entry, list[UsageRecord]]] = []
        for entry in entries:
            if not entry.fields:
                finished.append(entry)
                continue
            try:
                parsed.append((entry, usage_records.records_of(entry.fields)))
            except ValueError as exc:
                log.error("usage entry %s on %s is malformed (%s); left pending", entry.entry_id, entry.stream, exc)
        with db.session_scope(self.settings) as session:
            written, refused = _write(session, [record for _entry, records in parsed for record in records])
        finished += [entry for entry, records in parsed if not any(r.request_id in refused for r in records)]
        self._acknowledge(finished)
        return written

    def _acknowledge(self, entries: list[Entry]) -> None:
        by_stream: dict[str, list[str]] = defaultdict(list)
        for entry in entries:
            by_stream[entry.stream].append(entry.entry_id)
        pipe = self.redis.pipeline(transaction=False)
        for stream, entry_ids in by_stream.items():
            pipe.xack(stream, GROUP, *entry_ids)
            pipe.xdel(stream, *entry_ids)
        pipe.execute()


def _write(session: Session, records: list[UsageRecord]) -> tuple[int, set[str]]:
    """Usage rows and ledger transactions for the records SQL does not have yet; returns how many
    were written and the request ids refused (to leave pending)."""
    seen = set(session.scalars(select(Usage.request_id).where(Usage.request_id.in_({r.request_id for r in records}))))
    key_owners = dict(
        session.execute(select(ApiKey.id, ApiKey.account_id).where(ApiKey.id.in_({r.key_id for r in records}))).all()
    )
    versions = {
        version.id: version
        for version in session.scalars(
            select(PriceVersion).where(PriceVersion.id.in_({r.price_version_id for r in records} - {None}))
        )
    }
    new: list[UsageRecord] = []
    refused: set[str] = set()
    for record in records:
        if record.request_id in seen:
            continue
        if key_owners.get(record.key_id) != record.account_id:
            log.error("usage %s: key %s is not a key of account %s; left pending", record.request_id,
                      record.key_id, record.account_id)
            refused.add(record.request_id)
            continue
        version = versions.get(record.price_version_id)
        if record.price_version_id is not None and version is None:
            log.error("usage %s: unknown price version %s; left pending", record.request_id, record.price_version_id)
            refused.add(record.request_id)
            continue
        if version is not None:
            _check_cost(record, version)
        seen.add(record.request_id)
        new.append(record)
    charged = [record for record in new if record.cost_nano]
    posted = ledger.post_new(
        session,
        [ledger.usage_posting(r.account_id, r.request_id, r.cost_nano, r.description()) for r in charged],
    )
    transaction_ids = {record.request_id: tx_id for record, tx_id in zip(charged, posted, strict=True)}
    if new:
        session.execute(insert(Usage), [record.row_values(transaction_ids.get(record.request_id)) for record in new])
    return len(new), refused


def _check_cost(record: UsageRecord, version: PriceVersion) -> None:
    """Flag a charge that differs from the price version's; the charge stands (Redis made it)."""
    expected = pricing.cost_nano(record.tokens, version)
    if record.billing_basis == "estimated" and record.cost_nano < expected:
        return  # the hot path caps an estimate at the amount it held for the request
    if expected != record.cost_nano:
        log.error(
            "usage %s: charged %s nano but price version %s gives %s; recorded as charged",
            record.request_id, record.cost_nano, version.id, expected,
        )
