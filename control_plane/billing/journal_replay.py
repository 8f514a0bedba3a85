"""Replays the usage journal: records nginx journaled (lua/tollgate/journal.lua) that never reached
Redis, or that Redis lost, are settled again — exactly once.

nginx journals each record, as it finishes, under the id of the settlement batch it joins, and
each batch once Redis applied it (a "sent" line). A batch is settled again only when its own worker
can no longer send it:

- sent, and Redis has no marker for it (`tg:{s<n>}:batch:<id>`, kept an hour) ten seconds later:
  Redis lost it (it restarted without its last writes, or lost its data);
- not sent, and its worker is gone (the flock it held on `<node>-<pid>.lock` is free: the kernel
  drops it however the worker died), ten seconds after its newest record, without a marker: the
  worker died with the batch open or failing.

A batch still open or being retried by a live worker waits, however old. Of a batch settled
again, only the records SQL has not recorded (as usage rows or quarantined) are sent, with the
settle script nginx uses, under the same batch id: whichever of nginx and this replay comes
second does nothing. A batch's lines are read together from every file (it may span the hour's
rotation); a file is handled up to its first line of a batch that waits. A line that does not
parse is logged and skipped.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from .. import db
from ..hot import connection, redis_keys, usage_records
from ..hot.usage_records import UsageRecord
from ..models import Usage, UsageQuarantine
from ..settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

SETTLE_SCRIPT = REPO_ROOT / "lua" / "tollgate" / "redis_scripts" / "settle.lua"
SETTLE_GRACE_MS = 10_000          # longer than Redis may take to make a write durable
MARKER_LIFETIME_MS = 50 * 60_000  # batch markers live an hour; trust an absent one well inside that
DELETE_AFTER_SECONDS = 3 * 3600   # fully replayed files of past hours are removed
STATE_FILE = "replayed.json"      # file name -> bytes already handled
REPLAY_LOCK = "replay.lock"       # one replay of a directory at a time
REPLAY_NODE = "journal-replay"    # the node the replay settles as: none holds a lease


@dataclass
class Batch:
    """One settlement batch's journal lines, from every file."""
    shard: int
    batch_id: str
    records: dict[str, str] = field(default_factory=dict)  # request id -> packed record
    newest_ms: int = 0            # the newest record's time
    sent_ms: int | None = None    # when its worker journaled it applied
    starts: list[tuple[str, int]] = field(default_factory=list)  # (file, offset) of each line

    def add(self, payload: str, name: str, start: int) -> None:
        self.starts.append((name, start))
        if payload.isdigit():
            self.sent_ms = int(payload)
            return
        request_id, _tab, rest = payload.partition("\t")
        self.records.setdefault(request_id, payload)  # a line journaled twice counts once
        ts = rest.partition("\t")[0]
        if ts.isdigit():
            self.newest_ms = max(self.newest_ms, int(ts))

    @property
    def worker(self) -> str | None:
        """`<node>-<pid>`, the name of its worker's lock file, from the batch id
        (`<node id>:<worker pid>:<epoch seconds it opened>:<seq>`, lua/tollgate/node.lua)."""
        parts = self.batch_id.rsplit(":", 3)
        return f"{parts[0]}-{parts[1]}" if len(parts) == 4 and parts[1].isdigit() else None


class JournalReplay:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.directory = settings.journal_dir
        self.redis = connection.client(settings)
        self.settle = self.redis.register_script(SETTLE_SCRIPT.read_text())
        # Between runs (`--follow`, the worker): the batches read and not yet due, and where each
        # file has been read to, so a run reads only what was written since the last; a new
        # process starts from the state file.
        self.waiting: dict[tuple[int, str], Batch] = {}
        self.read_to: dict[str, int] = {}

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
        with _exclusive(self.directory / REPLAY_LOCK) as ours:
            if not ours:
                return 0  # another worker's replay is reading this directory
            return self._run()

    def _run(self) -> int:
        state = self._state()
        paths = sorted(self.directory.glob("*.tsv"))
        batches = self.waiting
        self.read_to = {path.name: _read(path, self.read_to.get(path.name, state.get(path.name, 0)), batches)
                        for path in paths}  # file name -> the end of its last complete line
        now_ms = time.time() * 1000
        alive: dict[str, bool] = {}
        due = []
        for key, batch in list(batches.items()):
            if self._due(batch, now_ms, alive):
                del batches[key]
                if batch.sent_ms is None or now_ms - batch.sent_ms < MARKER_LIFETIME_MS:
                    due.append(batch)  # (a batch sent longer ago may have outlived its marker: left)
        try:
            replayed = self._replay(due)
        except BaseException:
            self.waiting, self.read_to = {}, {}  # read again from the state file next time
            raise
        held_back: dict[str, int] = {}  # file name -> its first line of a batch that waits
        for batch in batches.values():
            for name, start in batch.starts:
                held_back[name] = min(start, held_back.get(name, start))
        for path in paths:
            state[path.name] = held_back.get(path.name, self.read_to[path.name])
            if (path.name not in held_back and path.stat().st_size == state[path.name]
                    and time.time() - path.stat().st_mtime > DELETE_AFTER_SECONDS):
                path.unlink()
                state.pop(path.name, None)
        self._save(state)
        self._forget_dead_workers(paths, alive)
        return replayed

    def _due(self, batch: Batch, now_ms: float, alive: dict[str, bool]) -> bool:
        """Whether the batch is past what its worker can still do: sent (and past Redis's
        durability), or left unsent by a worker that is gone."""
        if batch.sent_ms is not None:
            return now_ms - batch.sent_ms >= SETTLE_GRACE_MS
        worker = batch.worker
        if worker is not None:
            if worker not in alive:
                alive[worker] = _locked(self.directory / f"{worker}.lock")
            if alive[worker]:
                return False
        return now_ms - batch.newest_ms >= SETTLE_GRACE_MS

    def _replay(self, batches: list[Batch]) -> int:
        """Settles again the records of the batches Redis has no marker of and SQL has not
        recorded; returns how many."""
        pipe = self.redis.pipeline(transaction=False)
        for batch in batches:
            pipe.exists(redis_keys.batch(batch.shard, batch.batch_id))
        settled = 0
        for batch, applied in zip(batches, pipe.execute() if batches else [], strict=True):
            if not applied:
                settled += self._settle(batch)
        return settled

    def _settle(self, batch: Batch) -> int:
        records = []
        for packed in batch.records.values():
            try:
                records.append((usage_records.parse_packed(packed), packed))
            except ValueError as exc:
                log.error("a usage journal line does not parse (%s); not replayed", exc)
        request_ids = [record.request_id for record, _packed in records]
        with db.read_session(self.settings) as session:  # recorded, or quarantined: Redis had it
            known = set(session.scalars(select(Usage.request_id).where(Usage.request_id.in_(request_ids))))
            known |= set(session.scalars(select(UsageQuarantine.request_id).where(
                UsageQuarantine.request_id.in_(request_ids))))
        missing = [(record, packed) for record, packed in records if record.request_id not in known]
        if not missing:
            return 0
        self.settle(*_settle_call(batch, missing))
        log.warning("replayed %d usage records of batch %s from the journal", len(missing), batch.batch_id)
        return len(missing)

    def _forget_dead_workers(self, paths: list[Path], alive: dict[str, bool]) -> None:
        """Removes the lock files of workers that are gone and whose journal files are too."""
        with_files = {path.name.rsplit("-", 1)[0] for path in paths if path.exists()}
        for lock in self.directory.glob("*-*.lock"):
            if lock.stem not in with_files and not alive.get(lock.stem) and not _locked(lock):
                lock.unlink(missing_ok=True)


def _settle_call(batch: Batch, missing: list[tuple[UsageRecord, str]]) -> tuple[list, list]:
    """The settle script's KEYS and ARGV (lua/tollgate/redis_scripts/settle.lua), as nginx sends
    them but for a node of its own: no lease is released, none renewed."""
    shard = batch.shard
    keys = [redis_keys.usage_stream(shard), redis_keys.batch(shard, batch.batch_id), redis_keys.leases(shard)]
    args = [REPLAY_NODE, 0, "\n".join(packed for _record, packed in missing)]
    costs: dict[tuple[int, int], int] = {}
    for record, _packed in missing:
        costs[(record.key_id, record.account_id)] = costs.get((record.key_id, record.account_id), 0) + record.cost_nano
    for (key_id, account_id), cost in costs.items():
        keys += [redis_keys.account(shard, account_id), redis_keys.key_state(shard, key_id),
                 redis_keys.lease(shard, key_id)]
        args += [key_id, cost, redis_keys.lease_member(key_id, account_id, REPLAY_NODE)]
    return keys, args


def _read(path: Path, offset: int, batches: dict[tuple[int, str], Batch]) -> int:
    """Adds the complete lines of `path` from `offset` to their batches; returns where the last
    complete line ends. A line without a shard and a batch id is logged and passed over."""
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read()
    position = offset
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break  # a line being written
        start, position = position, position + len(raw)
        shard, batch_id, payload = (raw.decode(errors="replace").rstrip("\n").split("\t", 2) + ["", ""])[:3]
        if not shard.isdigit() or not batch_id or not payload:
            log.error("a usage journal line does not parse (no shard, batch id and record); not replayed")
            continue
        key = (int(shard), batch_id)
        batch = batches.get(key)
        if batch is None:
            batch = batches[key] = Batch(int(shard), batch_id)
        batch.add(payload, path.name, start)
    return position


def _locked(path: Path) -> bool:
    """Whether a live process holds the flock of `path` (a journal writer's lock file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    """Holds the flock of `path` for the block if no one else does; yields whether it does."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
