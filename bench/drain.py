#!/usr/bin/env python3
"""How fast the usage drain moves records from the Redis streams into SQL, against a raw COPY of
the same usage rows into a table of the same shape (the limit of what a drain can do), with 1, 2
and 4 workers (consumer-group members, each a process of its own).

For each worker count: a fresh database (a PostgreSQL database made for the run and dropped
after, or SQLite with --sqlite) at the newest schema with the demo catalog and --accounts
accounts with a key each; --records usage records as the hot path writes them (sandbox-chat,
priced at its version, in settlement batches of 50 records an entry, spread over the shards'
streams); then the workers drain until the streams are empty. Printed: records/s of the drain
(wall clock), the workers' CPU µs per record (user + system, every worker), the database
server's share is not counted; and records/s of the raw COPY, measured in the same run.
Issue 16's target: ≤ 40 µs of worker CPU a record on PostgreSQL (≥ 25,000 records/s a core).
See bench/README.md.
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import redis
import sqlalchemy as sa
from click.testing import CliRunner

from control_plane import db
from control_plane import settings as settings_module
from control_plane.billing.usage_drain import UsageDrain
from control_plane.catalog import pricing
from control_plane.cli.main import main as cli_main
from control_plane.hot import redis_keys, usage_records
from control_plane.models import Account, ApiKey, Model, PriceVersion, Route

POSTGRES_URL = os.environ.get("TOLLGATE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
RECORDS_PER_ENTRY = 50
TOKENS = {"in": "25", "cr": "0", "cw": "0", "cw1h": "0", "out": "24", "rsn": "0"}


def start_redis(home: Path) -> tuple[subprocess.Popen, str]:
    socket_path = home / "redis.sock"
    proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(socket_path), "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(unix_socket_path=str(socket_path))
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.RedisError:
            time.sleep(0.05)
    return proc, f"unix://{socket_path}"


def fresh_database(sqlite: bool, home: Path) -> tuple[str, callable]:
    if sqlite:
        return f"sqlite:///{home / 'bench.db'}", lambda: None
    name = f"tollgate_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False), drop


def prepare(env: dict[str, str], accounts: int) -> list[tuple[int, int]]:
    """The schema, the demo catalog and `accounts` funded accounts; their (account id, key id)."""
    runner = CliRunner()
    for args in (["db", "upgrade"], ["demo"]):
        result = runner.invoke(cli_main, args, env=env)
        assert result.exit_code == 0, result.output
    for i in range(accounts):
        email = f"drain{i}@bench.example"
        for args in (["account", "create", email], ["credit", email, "1000", "--reason", "bench"],
                     ["key", "create", email]):
            result = runner.invoke(cli_main, args, env=env)
            assert result.exit_code == 0, result.output
    settings = settings_module.load(env)
    with db.read_session(settings) as session:
        return [tuple(row) for row in session.execute(sa.select(ApiKey.account_id, ApiKey.id).join(Account).where(
            Account.email.like("%@bench.example")))]


def record_template(settings) -> dict[str, str]:
    """sandbox-chat's record values: its route, cost version and price version, the exact charge."""
    with db.read_session(settings) as session:
        model = session.query(Model).filter(Model.name == "sandbox-chat").one()
        route = session.query(Route).filter(Route.model_id == model.id).order_by(Route.priority).first()
        cost_version = (session.query(PriceVersion).filter(PriceVersion.route_id == route.id)
                        .order_by(PriceVersion.id.desc()).first())
        price = (session.query(PriceVersion).filter(PriceVersion.model_id == model.id, PriceVersion.route_id.is_(None))
                 .order_by(PriceVersion.id.desc()).first()) or cost_version
        values = {"rid": "x", "ts": str(int(time.time() * 1000)), "acct": "1", "key": "1", "model": model.name,
                  "umodel": route.upstream_model, "provider": "sandbox", "pv": str(price.id), "ep": "chat.completions",
                  "stream": "0", "status": "200", "basis": "provider", **TOKENS, "cost": "0", "ms": "40", "ttfb": "40",
                  "node": "bench", "hold": "100000", "over": "0", "asked": model.name, "route": str(route.id),
                  "cv": str(cost_version.id), "pcost": "0", "tries": "1", "failed": "", "ecode": "", "emsg": ""}
        tokens = usage_records.parse(values).tokens
        values["cost"] = str(pricing.cost_nano(tokens, price))
        values["pcost"] = str(pricing.cost_nano(tokens, cost_version))
    return values


def fill_streams(settings, owners: list[tuple[int, int]], template: dict[str, str], records: int) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    pipe = client.pipeline(transaction=False)
    batch: dict[int, list[str]] = {}
    for i in range(records):
        account_id, key_id = owners[i % len(owners)]
        shard = redis_keys.shard_of(account_id, settings.redis_shards)
        values = {**template, "rid": f"bench-{i:09d}", "acct": str(account_id), "key": str(key_id)}
        batch.setdefault(shard, []).append("\t".join(values[name] for name in usage_records.RECORD_FIELDS))
        if len(batch[shard]) == RECORDS_PER_ENTRY:
            pipe.xadd(redis_keys.usage_stream(shard), {"r": "\n".join(batch.pop(shard))})
    for shard, lines in batch.items():
        pipe.xadd(redis_keys.usage_stream(shard), {"r": "\n".join(lines)})
    pipe.execute()


def drain_worker(env: dict[str, str], name: str, started, cpu_seconds) -> None:
    """Drain until the streams stay empty; add this worker's CPU from the start signal to the
    last record (user + system; not its start-up, connecting, or the idle reads that end it) to
    cpu_seconds: the worker's cost a record as it runs, which a worker that runs for days pays."""
    logging.disable(logging.CRITICAL)
    settings = settings_module.load(env)
    drain = UsageDrain(settings, name)
    drain.ensure_groups()
    started.wait()
    began = busy = process_cpu()
    idle = 0
    while idle < 3:
        entries = drain.read(block_ms=50)
        if entries:
            drain.record(entries)
            busy = process_cpu()
            idle = 0
        else:
            idle += 1
    with cpu_seconds.get_lock():
        cpu_seconds.value += busy - began
    db.dispose_engines()


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_drain(env: dict[str, str], workers: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of every worker) to drain the streams."""
    context = multiprocessing.get_context("fork")
    started = context.Event()
    cpu_seconds = context.Value("d", 0.0)
    procs = [context.Process(target=drain_worker, args=(env, f"bench-{n}", started, cpu_seconds))
             for n in range(workers)]
    for proc in procs:
        proc.start()
    time.sleep(1)  # every worker connected and in its group
    began = time.perf_counter()
    started.set()
    for proc in procs:
        proc.join()
    wall = time.perf_counter() - began - 0.15  # the last worker's three idle reads
    return wall, cpu_seconds.value


def raw_copy(database_url: str, records: int) -> float:
    """Seconds to COPY `records` usage rows as the drain writes them into an empty table of the
    usage table's shape (PostgreSQL: a binary COPY, as db.insert_rows), or to executemany them
    (SQLite)."""
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        row = connection.execute(sa.text("SELECT * FROM usage LIMIT 1")).mappings().one()
    columns = [name for name in row if name != "id"]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            cursor.execute("CREATE TABLE usage_copy (LIKE usage INCLUDING DEFAULTS)")
            cursor.execute(f"SELECT {', '.join(columns)} FROM usage_copy LIMIT 0")
            types = [column.type_code for column in cursor.description]
            raw.commit()
            began = time.perf_counter()
            with cursor.copy(f"COPY usage_copy ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for i in range(records):
                    copy.write_row([f"copy-{i:09d}" if name == "request_id" else row[name] for name in columns])
        else:
            cursor.execute("CREATE TABLE usage_copy AS SELECT * FROM usage WHERE 0")
            raw.commit()
            began = time.perf_counter()
            cursor.executemany(
                f"INSERT INTO usage_copy ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                ([f"copy-{i:09d}" if name == "request_id" else row[name] for name in columns] for i in range(records)))
        raw.commit()
        return time.perf_counter() - began
    finally:
        raw.close()
        engine.dispose()


def one_run(sqlite: bool, records: int, accounts: int, workers: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="tollgate-drain-bench-"))
    redis_proc, redis_url = start_redis(home)
    database_url, drop = fresh_database(sqlite, home)
    try:
        env = {"TOLLGATE_HOME": str(home), "TOLLGATE_DATABASE_URL": database_url, "TOLLGATE_REDIS_URL": redis_url,
               "TOLLGATE_LOG_LEVEL": "error"}
        owners = prepare(env, accounts)
        settings = settings_module.load(env)
        fill_streams(settings, owners, record_template(settings), records)
        db.dispose_engines()
        wall, cpu = run_drain(env, workers)
        engine = sa.create_engine(database_url)
        with engine.connect() as connection:
            drained = connection.execute(sa.text("SELECT COUNT(*) FROM usage")).scalar()
        engine.dispose()
        assert drained == records, (drained, records)
        copy_seconds = raw_copy(database_url, records)
        return {"workers": workers, "rps": records / wall, "cpu_us": cpu / records * 1e6,
                "copy_rps": records / copy_seconds}
    finally:
        db.dispose_engines()
        drop()
        redis_proc.terminate()
        redis_proc.wait()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to run, comma-separated")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()
    print(f"usage drain, {args.records:,} records over {args.accounts} accounts, "
          f"{'SQLite' if args.sqlite else 'PostgreSQL'}; {os.cpu_count()} cores")
    for workers in (int(part) for part in args.workers.split(",")):
        row = one_run(args.sqlite, args.records, args.accounts, workers)
        print(f"  {workers} worker{'s' if workers > 1 else ' '}: {row['rps']:>9,.0f} records/s, "
              f"{row['cpu_us']:6.1f} µs worker CPU a record; raw COPY {row['copy_rps']:>9,.0f} rows/s; "
              f"drain/COPY {row['rps'] / row['copy_rps']:.3f}")


if __name__ == "__main__":
    main()
