#!/usr/bin/env python3
"""How fast the console's request log answers over a million usage rows: its page (unfiltered,
each filter, a date range far in the past, a request-id search, deep pages) and its CSV.

Fills a fresh database (SQLite, or a PostgreSQL database made for the run and dropped after) with
1,000,000 usage rows of one account and 200,000 of five others by bulk insert (executemany on
SQLite, COPY on PostgreSQL), builds their usage_daily rows as migration 0007 does, then times the
pages and CSV through the Flask app (its test client: the view, the query and the template, no
HTTP). Targets (issue 13, item 7): a page in under 300 ms, the CSV at 50,000 rows/s or more.
See bench/README.md.
"""
from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sqlalchemy as sa

from control_plane import db
from control_plane import settings as settings_module
from control_plane.app import create_app
from control_plane.console.sessions import _hash
from control_plane.models import Account, ApiKey, ConsoleSession, Usage, utcnow

MODELS = ("bench-chat", "bench-mini", "bench-claude", "bench-reasoner", "bench-embed")
KEYS = 4  # of the measured account; key i serves every KEYS-th row
DAYS = 365  # the rows span the year before now, oldest first
ERROR_EVERY = 97  # one row in 97 failed: 429 or 502
MEASURED_RUNS = 5
PAGE_TARGET_MS = 300
CSV_TARGET_ROWS_PER_S = 50_000
# The CSV target is a streaming rate: it is checked on exports this long; a short one is mostly
# its request's fixed cost (and a filter's scattered rows), shown but not held to it.
CSV_MEASURED_ROWS = 100_000
COLUMNS = [column.name for column in Usage.__table__.columns]


def usage_rows(first_id: int, count: int, account_id: int, key_ids: list[int], start: datetime):
    """`count` usage rows of the account, ids from first_id, evenly over DAYS days from start."""
    step = timedelta(days=DAYS) / count
    for n in range(count):
        usage_id = first_id + n
        failed = n % ERROR_EVERY == 0
        status = (429 if n % 2 else 502) if failed else 200
        model = MODELS[n % len(MODELS)]
        tokens = (0, 0, 0, 0, 0, 0) if failed else (1000 + n % 500, n % 3 * 128, 0, 0, 200 + n % 300, 0)
        cost = 0 if failed else tokens[0] * 150 + tokens[1] * 75 + tokens[4] * 600
        values = {
            "id": usage_id, "request_id": f"{usage_id:016x}{account_id:016x}", "account_id": account_id,
            "key_id": key_ids[n % len(key_ids)], "model": model, "requested_model": model,
            "upstream_model": model + "-upstream", "provider": "bench", "price_version_id": None, "route_id": None,
            "cost_version_id": None, "provider_cost_nano": cost, "attempts": 1, "failed_statuses": "",
            "endpoint": "chat.completions", "stream": n % 2 == 0, "status": status,
            "billing_basis": "none" if failed else "provider",
            "input_tokens": tokens[0], "cached_input_tokens": tokens[1], "cache_write_tokens": tokens[2],
            "cache_write_1h_tokens": tokens[3], "output_tokens": tokens[4], "reasoning_tokens": tokens[5],
            "cost_nano": cost, "hold_nano": cost * 2, "overage_nano": 0, "latency_ms": 800 + n % 700,
            "ttfb_ms": 120 + n % 90, "error_code": ("rate_limit_exceeded" if status == 429 else "provider_unreachable")
            if failed else "", "error_message": "The provider answered an error." if failed else "", "node": "bench",
            "created_at": start + step * n, "transaction_id": None,
        }
        yield values


def fill(engine, rows_main: int, rows_others: int) -> tuple[int, list[int], datetime]:
    """The accounts, keys and usage rows; usage_daily built from them. (main account id, its key
    ids, the first row's time)."""
    start = (utcnow() - timedelta(days=DAYS)).replace(microsecond=0)
    with engine.begin() as conn:
        accounts = []
        for n in range(6):
            accounts.append(conn.execute(sa.insert(Account.__table__).returning(Account.__table__.c.id), {
                "email": f"bench{n}-{uuid.uuid4().hex[:6]}@example.com", "is_admin": False, "status": "active",
                "balance_nano": 0, "created_at": start, "email_verified_at": start}).scalar_one())
        keys = {}
        for account_id in accounts:
            keys[account_id] = [conn.execute(sa.insert(ApiKey.__table__).returning(ApiKey.__table__.c.id), {
                "account_id": account_id, "name": f"key {n}", "key_hash": secrets.token_hex(32),
                "prefix": "sk-tg-bench", "status": "active", "created_at": start, "cap_fallback_price": False,
            }).scalar_one() for n in range(KEYS)]
    main, others = accounts[0], accounts[1:]
    began = time.perf_counter()
    next_id = 1
    # The others' rows interleave with the main account's in id order, as a shared instance's do.
    batches = [(main, rows_main)] + [(other, rows_others // len(others)) for other in others]
    for account_id, count in batches:
        _bulk_insert(engine, usage_rows(next_id, count, account_id, keys[account_id], start))
        next_id += count
    inserted = time.perf_counter() - began
    _build_daily(engine)
    print(f"filled {next_id - 1:,} usage rows in {inserted:.1f} s "
          f"({(next_id - 1) / inserted:,.0f} rows/s), usage_daily in {time.perf_counter() - began - inserted:.1f} s")
    return main, keys[main], start


def _bulk_insert(engine, rows) -> None:
    """COPY on PostgreSQL; on SQLite one executemany in one transaction, values bound as
    SQLAlchemy binds them there (its DATETIME text, booleans as 0/1)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            with cursor.copy(f"COPY usage ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[name] for name in COLUMNS])
        else:
            cursor.execute("BEGIN")
            cursor.executemany(
                f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                ([row["created_at"].strftime("%Y-%m-%d %H:%M:%S.%f") if name == "created_at" else row[name]
                  for name in COLUMNS] for row in rows))
            cursor.execute("COMMIT")
        cursor.close()
        raw.commit()
    finally:
        raw.close()


def _build_daily(engine) -> None:
    day = ("substr(created_at, 1, 10)" if engine.dialect.name == "sqlite"
           else "CAST(created_at AT TIME ZONE 'UTC' AS date)")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO usage_daily (account_id, day, model, requests, errors, cost_nano, first_usage_id, "
            f"last_usage_id) SELECT account_id, {day}, model, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), "
            f"SUM(cost_nano), MIN(id), MAX(id) FROM usage GROUP BY account_id, {day}, model")
        # What autovacuum does after a bulk load on PostgreSQL; SQLite is left as the gateway runs it.
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")


def signed_in_client(app, engine, account_id: int):
    """A test client with a console session of the account (as signing in makes one)."""
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(sa.insert(ConsoleSession.__table__), {
            "id": _hash(token), "account_id": account_id, "created_at": utcnow(),
            "expires_at": utcnow() + timedelta(days=1)})
    client = app.test_client()
    with client.session_transaction() as session:
        session["sid"] = token
    return client


def time_page(client, path: str) -> tuple[float, float, int]:
    """(median ms, max ms, rows shown) of MEASURED_RUNS GETs after a first one not counted."""
    client.get(path)
    times = []
    for _ in range(MEASURED_RUNS):
        began = time.perf_counter()
        response = client.get(path)
        body = response.get_data(as_text=True)
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (path, response.status_code, body[:500])
    return statistics.median(times), max(times), body.count('href="/console/logs/')


def time_csv(client, path: str) -> tuple[int, float]:
    """(rows, seconds) of reading the whole CSV."""
    began = time.perf_counter()
    response = client.get(path, buffered=False)
    lines = 0
    for chunk in response.response:
        lines += chunk.count("\n") if isinstance(chunk, str) else chunk.count(b"\n")
    response.close()
    return lines - 1, time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server's admin URL: the run makes its own "
                        "database there and drops it after (default: SQLite in a temp dir)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="usage rows of the measured account")
    parser.add_argument("--other-rows", type=int, default=200_000, help="usage rows of five other accounts")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (and the SQLite database)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="tollgate-bench-logs-"))
    env = {"TOLLGATE_HOME": str(home), "TOLLGATE_REDIS_URL": f"unix://{home}/no-redis.sock"}
    admin = database = None
    if args.postgres:
        database = f"tollgate_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
        env["TOLLGATE_DATABASE_URL"] = sa.engine.make_url(args.postgres).set(database=database).render_as_string(
            hide_password=False)
    os.environ.update(env)
    try:
        settings = settings_module.load({**os.environ, **env})
        db.upgrade(settings)
        engine = db.engine_for(settings.database_url)
        account_id, key_ids, start = fill(engine, args.rows, args.other_rows)
        app = create_app({"TOLLGATE_SETTINGS": settings, "TESTING": True})
        # No Redis here: the dashboard's balance comes from SQL, which the balances module warns of.
        logging.getLogger("control_plane.accounts.balances").setLevel(logging.ERROR)
        return measure(signed_in_client(app, engine, account_id), engine, key_ids, start, args.rows)
    finally:
        db.dispose_engines()
        if admin is not None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.dispose()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"kept {home}")


def measure(client, engine, key_ids: list[int], start: datetime, rows: int) -> int:
    middle_day = (start + timedelta(days=DAYS // 2)).date().isoformat()
    first_day = start.date().isoformat()
    with engine.connect() as conn:
        request_id = conn.execute(sa.select(Usage.request_id).where(Usage.id == rows // 2)).scalar_one()
    pages = [
        ("unfiltered, newest page", "/console/logs"),
        ("unfiltered, a deep page (?before= the middle id)", f"/console/logs?before={rows // 2}"),
        ("unfiltered, the oldest page (?after=0)", "/console/logs?after=1"),
        ("key", f"/console/logs?key_id={key_ids[1]}"),
        ("model", "/console/logs?model=bench-claude"),
        ("model, no rows (unknown model)", "/console/logs?model=no-such-model"),
        ("status=ok", "/console/logs?status=ok"),
        ("status=error", "/console/logs?status=error"),
        ("status=429", "/console/logs?status=429"),
        ("status=404 (no rows)", "/console/logs?status=404"),
        ("date range: the first day, far in the past", f"/console/logs?from={first_day}&to={first_day}"),
        ("date range: one day in the middle", f"/console/logs?from={middle_day}&to={middle_day}"),
        ("date range before any usage", "/console/logs?from=2000-01-01&to=2000-01-31"),
        ("date from the middle on", f"/console/logs?from={middle_day}"),
        ("key + model + status=error", f"/console/logs?key_id={key_ids[2]}&model=bench-mini&status=error"),
        ("model + a day in the middle", f"/console/logs?model=bench-embed&from={middle_day}&to={middle_day}"),
        ("request id search", f"/console/logs?request_id={request_id}"),
        ("request detail", f"/console/logs/{request_id}"),
        ("dashboard (usage_daily)", "/console/"),
    ]
    print(f"\n{engine.dialect.name}: {rows:,} usage rows of the account, median and max of {MEASURED_RUNS} runs")
    print(f"{'page':52} {'median ms':>10} {'max ms':>8} {'rows':>5}")
    slowest = 0.0
    for label, path in pages:
        median, most, shown = time_page(client, path)
        slowest = max(slowest, most)
        print(f"{label:52} {median:10.1f} {most:8.1f} {shown:5}")
    print(f"\n{'csv':52} {'rows':>10} {'s':>8} {'rows/s':>9}")
    slowest_csv = float("inf")
    for label, path in [("all rows", "/console/logs.csv"), ("model=bench-claude", "/console/logs.csv?model=bench-claude"),
                        ("status=error", "/console/logs.csv?status=error"),
                        ("one day in the middle", f"/console/logs.csv?from={middle_day}&to={middle_day}")]:
        count, seconds = time_csv(client, path)
        rate = count / seconds
        if count >= CSV_MEASURED_ROWS:
            slowest_csv = min(slowest_csv, rate)
        print(f"{label:52} {count:10,} {seconds:8.2f} {rate:9,.0f}")
    ok = slowest < PAGE_TARGET_MS and slowest_csv >= CSV_TARGET_ROWS_PER_S
    print(f"\nslowest page {slowest:.1f} ms (target < {PAGE_TARGET_MS}), slowest CSV of {CSV_MEASURED_ROWS:,} rows or more "
          f"{slowest_csv:,.0f} rows/s (target ≥ {CSV_TARGET_ROWS_PER_S:,}): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
