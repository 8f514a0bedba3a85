"""Replays the usage journal: records nginx journaled (lua/tollgate/journal.lua) that never reached
Redis, or that Redis lost, are settled again — exactly once.

nginx journals each record with the id of the settlement batch it joins. A batch whose marker
(`tg:{s<n>}:batch:<id>`, kept an hour) is in Redis was applied: its records are in the stream or in
SQL. A batch without a marker whose records are not all in SQL (as usage rows or quarantined) was
lost (Redis restarted without it, or the worker that held it died): its missing records are
settled again with the same script, under the same batch id, so whichever of nginx's retry and
this replay comes second does nothing. A journal line that does not parse is logged and skipped.
"""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict

from sqlalchemy import select

from .. import db
from ..hot import connection, redis_keys, usage_records
from ..hot.usage_records import UsageRecord
from ..models import Usage, UsageQuarantine
from ..settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

SETTLE_SCRIPT = REPO_ROOT / "lua" / "tollgate" / "redis_scripts" / "settle.lua"
SETTLE_GRACE_MS = 10_000          # nginx settles within milliseconds; give it ten seconds
MARKER_LIFETIME_MS = 50 * 60_000  # batch markers live an hour; replay well inside that
DELETE_AFTER_SECONDS = 3 * 3600   # fully replayed files of past hours are removed
STATE_FILE = "replayed.json"      # file name -> bytes already handled
REPLAY_NODE = "journal-replay"    # the node the replay settles as: none holds a lease


class JournalReplay:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.directory = settings.journal_dir
        self.redis = connection.client(settings)
        self.settle = self.redis.register_script(SETTLE_SCRIPT.read_text())

    def _state(self) -> dict[str, int]:
        path = self.directory / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def _save(self, state: dict[str, int]) -> None:
        path = self.directory / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)

    def run_once(self) -> int:
        """Replays what is due; returns the number of records settled again."""
        if not self.directory.exists():
            return 0
        state = self._state()
        now_ms = time.time() * 1000
        replayed = 0
        for path in sorted(self.directory.glob("*.tsv")):
            offset = state.get(path.name, 0)
            data = path.read_bytes()[offset:]
            due, consumed = _due_lines(data, now_ms)
            replayed += self._replay(due)
            state[path.name] = offset + consumed
            if consumed == len(data) and time.time() - path.stat().st_mtime > DELETE_AFTER_SECONDS:
                path.unlink()
                state.pop(path.name, None)
        self._save(state)
        return replayed

    def _replay(self, lines: list[tuple[int, str, UsageRecord, str]]) -> int:
        batches: dict[tuple[int, str], list[tuple[UsageRecord, str]]] = defaultdict(list)
        for shard, batch_id, record, packed in lines:
            batches[(shard, batch_id)].append((record, packed))
        settled = 0
        for (shard, batch_id), records in batches.items():
            marker = redis_keys.batch(shard, batch_id)
            if self.redis.exists(marker):
                continue
            request_ids = [r.request_id for r, _p in records]
            with db.read_session(self.settings) as session:  # recorded, or quarantined: Redis had it
                known = set(session.scalars(select(Usage.request_id).where(Usage.request_id.in_(request_ids))))
                known |= set(session.scalars(select(UsageQuarantine.request_id).where(
                    UsageQuarantine.request_id.in_(request_ids))))
            missing = [(r, p) for r, p in records if r.request_id not in known]
            if not missing:
                continue
            # The settle script's KEYS and ARGV (lua/tollgate/redis_scripts/settle.lua), as nginx
            # sends them but for a node of its own: no lease is released, none renewed.
            keys = [redis_keys.usage_stream(shard), marker, redis_keys.leases(shard)]
            args = [REPLAY_NODE, 0, "\n".join(p for _r, p in missing)]
            costs: dict[tuple[int, int], int] = defaultdict(int)
            for record, _packed in missing:
                costs[(record.key_id, record.account_id)] += record.cost_nano
            for (key_id, account_id), cost in costs.items():
                keys += [redis_keys.account(shard, account_id), redis_keys.key_state(shard, key_id),
                         redis_keys.lease(shard, key_id)]
                args += [key_id, cost, redis_keys.lease_member(key_id, account_id, REPLAY_NODE)]
            self.settle(keys=keys, args=args)
            log.warning("replayed %d usage records of batch %s from the journal", len(missing), batch_id)
            settled += len(missing)
        return settled


def _due_lines(data: bytes, now_ms: float) -> tuple[list[tuple[int, str, UsageRecord, str]], int]:
    """Complete journal lines old enough to replay (shard, batch id, record, packed record), and
    how many bytes were handled. Handling stops at the first line still inside the grace period
    (later ones are younger). A line that does not parse is logged and passed over."""
    due, consumed = [], 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break  # a line being written
        try:
            shard, batch_id, packed = raw.decode().rstrip("\n").split("\t", 2)
            line = (int(shard), batch_id, usage_records.parse_packed(packed), packed)
        except ValueError as exc:
            log.error("a usage journal line does not parse (%s); not replayed", exc)
            consumed += len(raw)
            continue
        age = now_ms - line[2].ts_ms
        if age < SETTLE_GRACE_MS:
            break
        if age < MARKER_LIFETIME_MS:
            due.append(line)
        consumed += len(raw)
    return due, consumed
