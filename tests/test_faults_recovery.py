"""Faults of the stores and of the usage worker under load. Each test ends the same way: every
request served is billed exactly once, at its exact cost, in SQL and in Redis, and reconcile
reports drift 0."""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from harness import REPO, Gateway, free_port, wait_for
from helpers import tokens_of
from simulator import Simulator

from control_plane.hot.redis_keys import CONSUMER_GROUP

EMAIL = "faulty@example.com"
HELLO = {"model": "sandbox-chat", "messages": [{"role": "user", "content": "Hi"}]}
# The exact charge of each request the tests send, by (model, streamed), in nano-USD: sandbox-chat
# (its counts: helpers.LONG_PROMPT) and slow-chat at its price, the openai_chat_stream fixture's usage.
BILLED = {
    # HELLO streamed: 90 bytes, 130 with the stream_options the gateway adds: 33 prompt tokens;
    # 24 output: 33 × 150 + 24 × 600 = 19,350
    ("sandbox-chat", True): ({"in": 33, "cr": 0, "cw": 0, "cw1h": 0, "out": 24, "rsn": 0}, 19_350),
    # HELLO not streamed: 91 bytes, 23 prompt tokens; 24 output: 23 × 150 + 24 × 600 = 17,850
    ("sandbox-chat", False): ({"in": 23, "cr": 0, "cw": 0, "cw1h": 0, "out": 24, "rsn": 0}, 17_850),
    # 318 × 150 + 1,024 × 75 + 87 × 600 = 176,700
    ("slow-chat", True): ({"in": 318, "cr": 1024, "cw": 0, "cw1h": 0, "out": 87, "rsn": 0}, 176_700),
}


def chats(gw: Gateway, key: str, count: int) -> list[int]:
    """`count` chat completions, streamed and not in turn, four at a time; their statuses."""
    bodies = [{**HELLO, "stream": i % 2 == 0} for i in range(count)]
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda body: gw.chat(key, body), bodies))


def pending_entries(gw: Gateway) -> int:
    """Usage entries delivered to a worker and not acknowledged, over every shard."""
    r = gw.redis()
    return sum(r.xpending(stream, CONSUMER_GROUP)["pending"] for stream in r.scan_iter("tg:{*}:usage", count=10_000))


def sql_balance_nano(gw: Gateway, email: str) -> int:
    engine = sa.create_engine(gw.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT balance_nano FROM accounts WHERE email = :email"),
                                {"email": email}).scalar_one()
    finally:
        engine.dispose()


def assert_billed_exactly_once(gw: Gateway, key: str, start_nano: int, served: int) -> None:
    """Every served request has one usage row, charged its exact cost, in SQL and in Redis alike,
    and Redis reconciles with SQL."""
    wait_for(lambda: len(gw.usage_rows(key)) >= served, 60, f"{served} usage rows in SQL")
    gw.wait_drained(60)
    rows = gw.usage_rows(key)
    assert len(rows) == served
    assert len({row["request_id"] for row in rows}) == served
    assert [(tokens_of(row), row["cost_nano"]) for row in rows] == [BILLED[row["model"], row["stream"]] for row in rows]
    charged = sum(row["cost_nano"] for row in rows)
    assert sql_balance_nano(gw, EMAIL) == start_nano - charged
    assert gw.balance_nano(EMAIL) == start_nano - charged
    ok, report = gw.reconciled()
    assert ok, report


def restarted(name: str, old_pid: int, pid_of) -> None:
    """Waits until the supervisor has started `name` again: pid_of() gives a new pid."""
    wait_for(lambda: pid_of() not in (None, old_pid), 30, f"the supervisor to start {name} again")


def redis_pid(gw: Gateway) -> int | None:
    """The instance's Redis once it answers, else None."""
    try:
        gw.redis().ping()
    except redis.RedisError:
        return None
    return int((gw.home / "run" / "redis.pid").read_text())


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_redis_restarted_under_load_bills_every_served_request_once(own_gateway, stop_signal):
    gw = own_gateway
    with Simulator() as sim:
        gw.cli("provider", "add", "slow", "--protocol", "openai", "--base-url", sim.url + "/v1", "--api-key", "k")
        gw.cli("model", "add", "slow-chat", "--provider", "slow", "--input", "0.15", "--cached-input", "0.075",
               "--output", "0.60")  # sandbox-chat's prices
        key = gw.create_customer(EMAIL, "10")
        start = gw.balance_nano(EMAIL)
        time.sleep(1.5)  # the new model and key past the gateway's config cache
        for _ in range(12):
            sim.enqueue("openai_chat_stream", chunking=[64], delay=0.02)  # about 1.7 s each
        slow_stream = {**HELLO, "model": "slow-chat", "stream": True}
        old_pid = redis_pid(gw)
        with ThreadPoolExecutor(12) as pool:
            streams = [pool.submit(gw.chat, key, slow_stream) for _ in range(12)]
            before = chats(gw, key, 8)
            os.kill(old_pid, stop_signal)  # the streams are still going
            during = chats(gw, key, 8)
            statuses = [f.result() for f in streams]
        restarted("redis", old_pid, lambda: redis_pid(gw))
        after = chats(gw, key, 8)

    assert before == [200] * 8 and after == [200] * 8, (before, after)
    assert set(during) <= {200, 503}, during
    assert statuses == [200] * 12, statuses
    assert_billed_exactly_once(gw, key, start, 12 + 8 + during.count(200) + 8)


def newest_aof(gw: Gateway) -> Path:
    """The AOF file Redis appends to now (appendonlydir/*.incr.aof, the highest sequence)."""
    return max((gw.home / "redis" / "appendonlydir").glob("*.incr.aof"), key=lambda p: int(p.name.split(".")[-3]))


def test_redis_restarted_without_its_last_writes_agrees_with_sql_again(own_gateway):
    """Redis answers a write before it is in its AOF (the write waits while a slow fsync runs):
    killed, it can come back without settlements whose records SQL already has. Here its AOF is cut
    back to what it held before the last six requests, as such a kill leaves it."""
    gw = own_gateway
    key = gw.create_customer(EMAIL, "10")
    start = gw.balance_nano(EMAIL)
    assert chats(gw, key, 2) == [200] * 2
    gw.wait_drained()
    aof = newest_aof(gw)
    kept = aof.stat().st_size
    assert chats(gw, key, 6) == [200] * 6
    wait_for(lambda: len(gw.usage_rows(key)) == 8, 30, "8 usage rows in SQL")
    gw.wait_drained()
    # 4 streamed and 4 not: 4 × 19,350 + 4 × 17,850 = 148,800 nano; Redis is about to forget 3 of each
    assert gw.balance_nano(EMAIL) == start - 148_800

    old_pid = redis_pid(gw)
    os.kill(gw.proc.pid, signal.SIGSTOP)  # the supervisor: Redis stays down until the AOF is cut
    try:
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{old_pid}").exists() or b"Z" in Path(f"/proc/{old_pid}/stat").read_bytes()
                 .split(b") ")[1][:1], 10, "Redis to die")
        with open(aof, "r+b") as f:
            f.truncate(kept)
    finally:
        os.kill(gw.proc.pid, signal.SIGCONT)
    restarted("redis", old_pid, lambda: redis_pid(gw))

    wait_for(lambda: gw.balance_nano(EMAIL) == start - 148_800, 30, "the worker to correct the balance")
    spent = [int(gw.redis().hget(name, "spent")) for name in gw.redis().scan_iter("tg:{*}:key:*", count=10_000)]
    assert sorted(spent) == [0, 148_800]  # the demo key's, this key's
    assert chats(gw, key, 2) == [200] * 2  # + 19,350 + 17,850
    assert_billed_exactly_once(gw, key, start, 10)
    assert gw.balance_nano(EMAIL) == start - 148_800 - 37_200


def test_usage_worker_killed_mid_batch_records_everything_once(own_gateway):
    gw = own_gateway
    key = gw.create_customer(EMAIL, "10")
    start = gw.balance_nano(EMAIL)
    [worker] = gw.worker_pids()
    statuses = []
    # Stopped while it waits for new entries, the worker is still handed the first ones Redis
    # gets (they become its pending entries); once in a while it was busy elsewhere: again.
    for _ in range(5):
        os.kill(worker, signal.SIGSTOP)
        statuses += chats(gw, key, 10)
        if pending_entries(gw):
            break
        os.kill(worker, signal.SIGCONT)
        gw.wait_drained()
    assert pending_entries(gw), "the stopped worker was handed no entries"
    statuses += chats(gw, key, 20)  # a backlog it has not read yet
    os.kill(worker, signal.SIGKILL)  # read, not recorded, not acknowledged

    restarted("the worker", worker, lambda: next(iter(gw.worker_pids()), None))
    assert set(statuses) == {200}, statuses
    assert_billed_exactly_once(gw, key, start, len(statuses))
    assert pending_entries(gw) == 0


def undrained_records(r):
    """Usage records in the streams (an entry holds a settlement batch's records, one a line)."""
    return sum(fields["r"].count("\n") + 1 for stream in r.scan_iter("tg:{*}:usage", count=10_000)
               for _id, fields in r.xrange(stream))


def test_a_usage_record_delivered_twice_is_billed_once(own_gateway):
    gw = own_gateway
    key = gw.create_customer(EMAIL, "10")
    start = gw.balance_nano(EMAIL)
    workers = gw.worker_pids()
    r = gw.redis()
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        served = chats(gw, key, 10)
        assert served == [200] * 10, served
        wait_for(lambda: undrained_records(r) >= 10, 10, "the settlements")
        entries = [(stream, fields) for stream in r.scan_iter("tg:{*}:usage", count=10_000)
                   for _id, fields in r.xrange(stream)]
        for stream, fields in entries:
            r.xadd(stream, fields)  # each record twice in the stream, in one backlog
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    gw.wait_drained()
    for stream, fields in entries:
        r.xadd(stream, fields)  # and a third time once SQL has it (an acknowledgement Redis lost)
    assert_billed_exactly_once(gw, key, start, 10)


class PrivatePostgres:
    """A PostgreSQL cluster of a test's own on a free loopback port, which the test may stop and
    start (never the machine's own server). The server refuses to run as root: as root it runs as
    the `postgres` user."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.port = free_port()
        self.data = Path(tempfile.mkdtemp(prefix="tollgate-pg-"))  # outside pytest's root-only tmp
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as_server = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_server:
            shutil.chown(self.data, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data / "db"), "-U", "postgres", "-A", "trust", "--no-sync",
                  "--no-locale", "-E", "UTF8")

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self._as_server, str(self.bindir / program), *args], check=True,
                       capture_output=True, timeout=60)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data / "db"), "-l", str(self.data / "server.log"), "-w", "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off", "start")

    def stop(self, mode: str) -> None:
        self._run("pg_ctl", "-D", str(self.data / "db"), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if (self.data / "db" / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.data)


def postgres_bindir() -> Path | None:
    """The newest PostgreSQL server's binaries Debian installed, if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


@pytest.fixture
def private_postgres():
    # One xdist worker at a time: a second apt-get would fail on dpkg's lock.
    with open(Path(tempfile.gettempdir()) / "tollgate-postgresql-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if postgres_bindir() is None and os.geteuid() == 0:
            subprocess.run(["bash", str(REPO / "scripts" / "install-debian-packages.sh"), "postgresql"], check=True)
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (Debian package postgresql)")
    server = PrivatePostgres(bindir)
    server.start()
    yield server
    server.remove()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgresql_restarted_mid_drain_loses_and_duplicates_nothing(private_postgres, tmp_path, mode):
    gw = Gateway(tmp_path / "gw", private_postgres.url).start()
    try:
        key = gw.create_customer(EMAIL, "10")
        start = gw.balance_nano(EMAIL)
        [worker] = gw.worker_pids()
        os.kill(worker, signal.SIGSTOP)
        statuses = chats(gw, key, 15)  # a backlog
        private_postgres.stop(mode)
        os.kill(worker, signal.SIGCONT)  # it drains into a database that is gone
        statuses += chats(gw, key, 15)  # the hot path needs no SQL
        worker_log = gw.home / "log" / "worker.log"
        wait_for(lambda: "retrying" in worker_log.read_text(), 30, "the worker to meet the outage")
        private_postgres.start()
        assert set(statuses) == {200}, statuses
        assert_billed_exactly_once(gw, key, start, len(statuses))
    finally:
        gw.stop()
