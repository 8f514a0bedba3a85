"""The usage drain: moves usage records from the Redis streams into SQL, each exactly once.

Per batch: one SQL transaction with the usage rows, one ledger transaction per account for its
charges (the account's charged rows name it, each row's cost its share) and the totals they add
to (billing/daily_usage.py per account, billing/usage_rollup.py for the admin overview),
committed before the entries are XACKed and XDELed (an entry holds one settlement batch's
records, one per line). A record SQL already has (delivered twice, or claimed from a consumer
that died after committing) is skipped. A record that cannot be recorded (malformed, a key of
another account, an unknown price or cost version, an account's charges in the batch beyond
MAX_BATCH_CHARGE) goes to the usage quarantine in the same transaction, with the reason, once
per stream entry line: it never holds up the records next to it.
"""
from __future__ import annotations

import gc
import logging
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import redis
from sqlalchemy import ARRAY, any_, bindparam, insert, select
from sqlalchemy.orm import Session

from .. import db, money
from ..catalog import pricing
from ..hot import connection, redis_keys, usage_records
from ..hot.usage_records import UsageRecord
from ..models import ApiKey, PriceVersion, Usage, UsageQuarantine, utc_timestamp
from ..settings import Settings
from . import daily_usage, ledger, usage_rollup

log = logging.getLogger(__name__)

GROUP = redis_keys.CONSUMER_GROUP
BATCH = 500
CLAIM_IDLE_MS = 60_000
PENDING = "0"  # XREADGROUP id: this consumer's delivered, unacknowledged entries
NEW = ">"  # XREADGROUP id: entries never delivered to the group
# The most one account is charged in one batch's transaction: far beyond any honest batch (a
# record's cost is at most 2^53), and a sum that stays in a BIGINT with room for the balance.
MAX_BATCH_CHARGE = 2**62
DESCRIBED_MODELS = 3  # the models a batch transaction's description names


# The longest record text and reason a quarantine row keeps (a record's NULs are kept as \0:
# PostgreSQL's text takes none).
QUARANTINE_RECORD_LIMIT = UsageQuarantine.__table__.c.record.type.length
QUARANTINE_REASON_LIMIT = UsageQuarantine.__table__.c.reason.type.length


@dataclass(frozen=True)
class Entry:
    stream: str
    entry_id: str
    fields: dict[str, str]  # empty if the entry was deleted while pending


class Line(NamedTuple):  # one per record of a batch: a tuple, fast to make
    """One packed record of a stream entry."""

    stream: str
    entry_id: str
    number: int  # 1 for the entry's first record
    packed: str


class UsageDrain:
    def __init__(self, settings: Settings, consumer: str):
        self.settings = settings
        self.consumer = consumer
        self.redis: redis.Redis = connection.client(settings)
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
            messages = dict(self._xreadgroup(None if walking else block_ms))
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

    def _xreadgroup(self, block_ms: int | None) -> list:
        """XREADGROUP of every stream from its cursor: in one call on one Redis; on a cluster,
        where each stream lives in a slot of its own, one call per stream, the wait shared out
        among them until one has entries."""
        if not self.settings.redis_cluster:
            return self.redis.xreadgroup(GROUP, self.consumer, dict(self._cursors), count=BATCH, block=block_ms) or []
        response = []
        for stream, cursor in self._cursors.items():
            block = None if block_ms is None or response else max(1, block_ms // len(self._cursors))
            response += self.redis.xreadgroup(GROUP, self.consumer, {stream: cursor}, count=BATCH, block=block) or []
        return response

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
        """Write the entries' records to SQL (the ones it cannot use to the quarantine), commit,
        then XACK + XDEL the entries; how many usage rows were new."""
        if not entries:
            return 0
        lines = [
            Line(entry.stream, entry.entry_id, number, packed)
            for entry in entries if entry.fields  # no fields: deleted while pending
            for number, packed in enumerate(usage_records.lines_of(entry.fields), 1)
        ]
        with _collection_paused(), db.session_scope(self.settings) as session:
            written = _write(session, lines)
        self._acknowledge(entries)
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


@contextmanager
def _collection_paused():
    """No automatic garbage collection while a batch is written: its tens of thousands of live
    objects (records, rows) would have the collector walk them again and again (a third of the
    drain's CPU); they are freed by reference counting when the batch is done."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _write(session: Session, lines: list[Line]) -> int:
    """Usage rows and ledger transactions for the records SQL does not have yet, quarantine rows
    for the lines it cannot use; returns how many usage rows were written."""
    parsed: list[tuple[Line, UsageRecord]] = []
    refused: list[tuple[Line, str]] = []
    for line in lines:
        try:
            parsed.append((line, usage_records.parse_packed(line.packed)))
        except ValueError as exc:
            refused.append((line, str(exc)))
    records = [record for _line, record in parsed]
    seen = _recorded(session, [r.request_id for r in records])
    key_owners = dict(
        session.execute(select(ApiKey.id, ApiKey.account_id).where(ApiKey.id.in_({r.key_id for r in records}))).all()
    )
    named_versions = {r.price_version_id for r in records} | {r.cost_version_id for r in records}
    versions = {
        version.id: version
        for version in session.scalars(select(PriceVersion).where(PriceVersion.id.in_(named_versions - {None})))
    }
    prices = {version_id: pricing.resolve(version) for version_id, version in versions.items()}
    new: list[UsageRecord] = []
    charged: dict[int, list[UsageRecord]] = defaultdict(list)  # each account's charged records
    charged_nano: dict[int, int] = defaultdict(int)
    for line, record in parsed:
        if record.request_id in seen:
            continue
        if key_owners.get(record.key_id) != record.account_id:
            refused.append((line, f"key {record.key_id} is not a key of account {record.account_id}"))
            continue
        version = versions.get(record.price_version_id)
        if record.price_version_id is not None and version is None:
            refused.append((line, f"unknown price version {record.price_version_id}"))
            continue
        if record.cost_version_id is not None and record.cost_version_id not in versions:
            refused.append((line, f"unknown cost version {record.cost_version_id}"))
            continue
        if charged_nano[record.account_id] + record.cost_nano > MAX_BATCH_CHARGE:
            reason = f"the charges of account {record.account_id} in one batch exceed {MAX_BATCH_CHARGE} nano"
            refused.append((line, reason))
            continue
        _check_cost(record, version, versions.get(record.cost_version_id), prices)
        seen.add(record.request_id)
        new.append(record)
        if record.cost_nano:
            charged[record.account_id].append(record)
            charged_nano[record.account_id] += record.cost_nano
    posted = ledger.post_new(session, [
        ledger.usage_posting(account_id, records[0].request_id, charged_nano[account_id], _charges_described(records))
        for account_id, records in charged.items()])
    transaction_ids = dict(zip(charged, posted, strict=True))
    if new:
        rows = [record.row_values(transaction_ids[record.account_id] if record.cost_nano else None)
                for record in new]
        ids = db.insert_rows(session, Usage.__table__, rows)
        for row, usage_id in zip(rows, ids, strict=True):
            row["id"] = usage_id
        daily_usage.add(session, rows)
        usage_rollup.add(session, rows)
    _quarantine(session, refused)
    return len(new)


def _charges_described(records: list[UsageRecord]) -> str:
    """'3 requests: sandbox-chat' or '25 requests: gpt-4o 20, sandbox-chat 5' (the most used
    models first, three at most, then how many more)."""
    models = Counter(record.model for record in records).most_common()
    count = len(records)
    if len(models) == 1:
        return f"{count} request{'s' if count > 1 else ''}: {models[0][0]}"
    named = ", ".join(f"{model} {requests}" for model, requests in models[:DESCRIBED_MODELS])
    more = len(models) - DESCRIBED_MODELS
    return f"{count} requests: {named}" + (f" and {more} more model{'s' if more > 1 else ''}" if more > 0 else "")


def _recorded(session: Session, request_ids: list[str]) -> set[str]:
    """The request ids SQL has usage rows of. On PostgreSQL the ids go as one array (= ANY): an
    IN list of a batch's thousands of values is a statement psycopg converts anew every time."""
    if session.get_bind().dialect.name == "postgresql":
        condition = Usage.request_id == any_(bindparam("ids", request_ids, type_=ARRAY(Usage.request_id.type)))
    else:
        condition = Usage.request_id.in_(request_ids)
    return set(session.scalars(select(Usage.request_id).where(condition)))


def _quarantine(session: Session, refused: list[tuple[Line, str]]) -> None:
    """A quarantine row for each refused line SQL does not have yet (a redelivered entry adds
    none)."""
    if not refused:
        return
    known = {
        tuple(row)
        for row in session.execute(
            select(UsageQuarantine.stream, UsageQuarantine.entry_id, UsageQuarantine.line)
            .where(UsageQuarantine.entry_id.in_({line.entry_id for line, _reason in refused}))
        )
    }
    rows = []
    for line, reason in refused:
        if (line.stream, line.entry_id, line.number) in known:
            continue
        log.error("usage record %d of entry %s on %s quarantined: %s", line.number, line.entry_id, line.stream,
                  reason)
        rows.append(dict(stream=line.stream, entry_id=line.entry_id, line=line.number,
                         record=line.packed.replace("\0", "\\0")[:QUARANTINE_RECORD_LIMIT],
                         reason=reason[:QUARANTINE_REASON_LIMIT],
                         **usage_records.identity_of(line.packed)))
    if rows:
        session.execute(insert(UsageQuarantine), rows)


def quarantine_item(row: UsageQuarantine) -> dict:
    """A quarantine row as the CLI and the API show it."""
    return {
        "id": row.id,
        "stream": row.stream,
        "entry_id": row.entry_id,
        "line": row.line,
        "reason": row.reason,
        "request_id": row.request_id,
        "account_id": row.account_id,
        "key_id": row.key_id,
        "cost_nano": row.cost_nano,
        "record": row.record,
        "created_at": utc_timestamp(row.created_at),
    }


def _check_cost(record: UsageRecord, version: PriceVersion | None, cost_version: PriceVersion | None,
                prices: dict[int, dict[str, int]]) -> None:
    """Flag a charge its billing basis does not give, and a provider cost its route's cost version
    does not give; both stand as recorded (Redis made the charge). `prices`: each version's,
    resolved (pricing.resolve), by id."""
    costs: dict[int, int] = {}  # of the record's tokens at each version (at cost: one version, priced once)

    def cost_at(version_id: int) -> int:
        if version_id not in costs:
            costs[version_id] = money.cost_nano(record.tokens, prices[version_id])
        return costs[version_id]

    expectation = _charge_rule_broken(record, version, cost_at)
    if expectation:
        log.error("usage %s (%s): charged %s nano with overage %s, but %s; recorded as charged",
                  record.request_id, record.billing_basis, record.cost_nano, record.overage_nano, expectation)
    counted = record.billing_basis in ("provider", "drained", "estimated")
    if cost_version is not None:
        provider_cost = cost_at(cost_version.id) if counted else 0
        if record.provider_cost_nano != provider_cost:
            log.error("usage %s (%s): provider cost %s nano, but cost version %s gives %s; recorded as reported",
                      record.request_id, record.billing_basis, record.provider_cost_nano, cost_version.id,
                      provider_cost)


def _charge_rule_broken(record: UsageRecord, version: PriceVersion | None, cost_at) -> str | None:
    """What the record's charge should have been, if it is not that (docs/internals.md, Usage
    record): provider usage is charged its price capped at the hold (`cost_at(version id)`: the
    price of its tokens), the rest is overage; an estimate at most the hold; invalid provider
    usage exactly the hold; no usage nothing."""
    cost, hold, overage = record.cost_nano, record.hold_nano, record.overage_nano
    basis = record.billing_basis
    if basis in ("provider", "drained") and version is None:
        return None if cost <= hold else f"a charge is at most its hold, {hold}"
    if basis in ("provider", "drained"):
        exact = cost_at(version.id)
        charge = min(exact, hold)
        if (cost, overage) == (charge, exact - charge):
            return None
        return (f"price version {version.id} gives {exact} against a hold of {hold}: a charge of {charge} "
                f"with overage {exact - charge}")
    if basis == "estimated":
        return None if cost <= hold and not overage else f"an estimate is at most its hold, {hold}, without overage"
    if basis == "invalid":
        return None if cost == hold else f"invalid provider usage is charged its hold, {hold}"
    return None if cost == 0 else "a request without usage is charged nothing"
