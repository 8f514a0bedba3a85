"""The usage journal's replay: a batch is settled again only once its worker can no longer send
it (the worker is gone, its lock free), or when Redis lost it after it was sent; whole, from every
file it spans, and once. Journal files written here as nginx writes them (lua/tollgate/journal.lua)."""
import fcntl
import os
import time

import pytest
from helpers import COST, packed_record, usage_entry, usage_record

from control_plane.billing.journal_replay import SETTLE_GRACE_MS, JournalReplay
from control_plane.hot import redis_keys

TEN_USD = 10_000_000_000
NODE = "gw-1a2b3c4d-5e6f"
PID = 4242
WORKER = f"{NODE}-{PID}"


@pytest.fixture
def alice(make_customer):
    return make_customer("alice@example.com")


@pytest.fixture
def shard(settings, alice) -> int:
    """Alice's shard: her batches' and records'."""
    return alice.shard(settings)


@pytest.fixture
def journal(settings):
    settings.journal_dir.mkdir(parents=True)
    return settings.journal_dir


def now_ms() -> int:
    return int(time.time() * 1000)


def batch_id(seq: int) -> str:
    """As lua/tollgate/node.lua names them: node, worker pid, when it opened, a number."""
    return f"{NODE}:{PID}:{now_ms() // 1000 - 60}:{seq}"


def record_line(shard: int, batch: str, packed: str) -> str:
    return f"{shard}\t{batch}\t{packed}\n"


def sent_line(shard: int, batch: str, at_ms: int) -> str:
    return f"{shard}\t{batch}\t{at_ms}\n"


def records(alice, price_version, *rids: str) -> list[str]:
    """Packed records of alice finished a minute ago: past the replay's grace."""
    ts = str(now_ms() - 60_000)
    return [packed_record(usage_record(alice, price_version, rid, ts=ts)) for rid in rids]


def write(journal, hour: str, *lines: str) -> None:
    with (journal / f"{WORKER}-{hour}.tsv").open("a") as f:
        f.write("".join(lines))


class LiveWorker:
    """An nginx worker's lock (journal.start_worker): held until `die`."""

    def __init__(self, journal, name: str = WORKER):
        self.fd = os.open(journal / f"{name}.lock", os.O_WRONLY | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def die(self) -> None:
        os.close(self.fd)


def entries(redis_client, shard: int) -> list[dict[str, str]]:
    return [fields for _entry_id, fields in redis_client.xrange(redis_keys.usage_stream(shard))]


def balance(redis_client, shard: int, alice) -> int:
    return int(redis_client.hget(redis_keys.account(shard, alice.account.id), "bal"))


def test_a_live_workers_unsent_batch_waits_however_old_and_is_replayed_once_its_worker_died(
        settings, shard, redis_client, journal, alice, price_version):
    worker = LiveWorker(journal)  # the batch open, or failing and retried: nginx writes nothing then
    first, second = records(alice, price_version, "req-1", "req-2")
    open_batch = batch_id(1)
    write(journal, "2026120100", record_line(shard, open_batch, first), record_line(shard, open_batch, second))
    replay = JournalReplay(settings)
    assert replay.run_once() == 0
    assert entries(redis_client, shard) == []

    worker.die()
    assert replay.run_once() == 2
    assert entries(redis_client, shard) == [usage_entry(first, second)]
    assert balance(redis_client, shard, alice) == TEN_USD - 2 * COST
    assert replay.run_once() == 0
    assert JournalReplay(settings).run_once() == 0
    assert balance(redis_client, shard, alice) == TEN_USD - 2 * COST


def test_a_sent_batch_is_replayed_only_when_redis_lost_its_marker(settings, shard, redis_client, journal, alice,
                                                                 price_version):
    worker = LiveWorker(journal)
    kept, lost, recent = batch_id(1), batch_id(2), batch_id(3)
    kept_record, lost_record, recent_record = records(alice, price_version, "req-kept", "req-lost", "req-recent")
    redis_client.set(redis_keys.batch(shard, kept), "1")
    long_ago = now_ms() - 60_000
    write(journal, "2026120100",
          record_line(shard, kept, kept_record), sent_line(shard, kept, long_ago),
          record_line(shard, lost, lost_record), sent_line(shard, lost, long_ago),
          record_line(shard, recent, recent_record), sent_line(shard, recent, now_ms()))
    assert JournalReplay(settings).run_once() == 1
    assert entries(redis_client, shard) == [usage_entry(lost_record)]
    assert redis_client.exists(redis_keys.batch(shard, lost))
    worker.die()


def test_a_batch_open_across_the_hour_is_replayed_whole(settings, shard, redis_client, journal, alice, price_version):
    before, after = records(alice, price_version, "req-before", "req-after")
    batch = batch_id(1)
    write(journal, "2026120100", record_line(shard, batch, before))
    write(journal, "2026120101", record_line(shard, batch, after), record_line(shard, batch, after))  # one twice
    assert JournalReplay(settings).run_once() == 2
    assert entries(redis_client, shard) == [usage_entry(before, after)]
    assert balance(redis_client, shard, alice) == TEN_USD - 2 * COST


def test_a_waiting_batch_holds_back_its_file_and_what_follows_is_settled_once(
        settings, shard, redis_client, journal, alice, price_version):
    worker = LiveWorker(journal)
    waiting, lost = batch_id(1), batch_id(2)
    waiting_record, lost_record = records(alice, price_version, "req-waiting", "req-lost")
    write(journal, "2026120100", record_line(shard, waiting, waiting_record),
          record_line(shard, lost, lost_record), sent_line(shard, lost, now_ms() - 60_000))
    replay = JournalReplay(settings)
    assert replay.run_once() == 1  # the sent batch Redis lost, behind the open one
    assert replay.run_once() == 0  # read again, and left to its marker
    worker.die()
    assert replay.run_once() == 1
    assert entries(redis_client, shard) == [usage_entry(lost_record), usage_entry(waiting_record)]
    assert balance(redis_client, shard, alice) == TEN_USD - 2 * COST


def test_a_dead_workers_batch_waits_out_the_grace_after_its_newest_record(
        settings, shard, redis_client, journal, alice, price_version):
    fresh = packed_record(usage_record(alice, price_version, "req-fresh", ts=str(now_ms() - SETTLE_GRACE_MS // 2)))
    write(journal, "2026120100", record_line(shard, batch_id(1), fresh))
    assert JournalReplay(settings).run_once() == 0


def test_a_dead_workers_lock_goes_with_its_last_journal_file(settings, journal):
    LiveWorker(journal).die()
    live = LiveWorker(journal, "gw-other-7")
    JournalReplay(settings).run_once()
    live.die()
    assert sorted(path.name for path in journal.glob("*.lock")) == ["gw-other-7.lock", "replay.lock"]
