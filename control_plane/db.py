"""The SQL engine, sessions and schema migrations.

Services take a Session and never commit; whoever opens `session_scope` owns the transaction.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import BigInteger, cast, create_engine, event, func, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from . import audit  # noqa: F401 (its hooks audit every session's changes)
from .settings import Settings

ALEMBIC_INI = Path(__file__).resolve().parent / "alembic.ini"
SQLITE_BUSY_TIMEOUT_MS = 10_000
READ_ONLY = "tollgate_read_only"  # execution option of read_session's engine


def make_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _begin_sqlite_transaction(conn):
    """sqlite3 would start transactions lazily and ignore SAVEPOINT, so we BEGIN ourselves. A
    writer takes the write lock up front (IMMEDIATE), so a transaction that reads before it
    writes cannot fail half-way; a reader takes none and never holds up a writer (WAL)."""
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def _configure_sqlite_connection(dbapi_connection, _record):
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_engines: dict[str, Engine] = {}


def engine_for(database_url: str) -> Engine:
    """The process's engine (and connection pool) for a database."""
    engine = _engines.get(database_url)
    if engine is None:
        engine = _engines.setdefault(database_url, make_engine(database_url))
    return engine


def dispose_engines() -> None:
    """Close every pooled connection (before dropping a test database, or at exit)."""
    while _engines:
        _engines.popitem()[1].dispose()


@contextmanager
def session_scope(settings: Settings):
    """One transaction: committed when the block ends, rolled back if it raises."""
    with Session(engine_for(settings.database_url), expire_on_commit=False) as session, session.begin():
        yield session


def read_session(settings: Settings) -> Session:
    """A session that only reads (the API's): on SQLite it takes no write lock. Close it."""
    return Session(engine_for(settings.database_url).execution_options(**{READ_ONLY: True}))


def upgrade(settings: Settings, revision: str = "head") -> None:
    """`alembic upgrade head` against settings.database_url. (Alembic is imported here: every
    command and gunicorn worker imports this module, and only start-up migrates.)"""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.attributes["settings"] = settings
    command.upgrade(config, revision)


def total(column):
    """Σ of a nano-USD or token column, 0 when empty, as an integer (PostgreSQL's SUM of a
    BIGINT is NUMERIC, which would come back as a Decimal)."""
    return cast(func.coalesce(func.sum(column), 0), BigInteger)


def upsert(session: Session, table):
    """INSERT … ON CONFLICT for the session's database (PostgreSQL's or SQLite's, which both have
    on_conflict_do_update): the running totals' way to add to a row that may exist."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def insert_rows(session: Session, table, rows: list[dict]) -> list[int]:
    """Insert many rows of a table with an integer `id` (each row's keys in one order, naming
    every column without a server default: SQLAlchemy's Python-side defaults do not run); their
    ids, ascending in the rows' order. A duplicate raises IntegrityError, a lost connection
    OperationalError, as SQLAlchemy raises them.

    The usage drain's thousands of rows a batch go in without SQLAlchemy's INSERT: on PostgreSQL
    the ids come from the table's sequence in one query and the rows by a binary COPY (a
    multi-row INSERT of thousands of values is too long for psycopg's statement cache, parsed
    again every time; a text COPY formats every value as text); on SQLite, whose writer holds the
    database's write lock for its whole transaction (BEGIN IMMEDIATE), the ids follow the
    table's largest, as SQLite's own would, and the rows go by the driver's executemany
    (SQLAlchemy's INSERT … RETURNING in row order runs one statement a row there)."""
    if not rows:
        return []
    dialect = session.get_bind().dialect
    columns = ("id", *rows[0])
    connection = session.connection().connection.driver_connection
    if dialect.name == "postgresql":
        import psycopg as driver

        sequence = f"pg_get_serial_sequence('{table.name}', 'id')"
        ids = sorted(session.scalar(text(f"SELECT array_agg(nextval({sequence})) FROM generate_series(1, :n)"),
                                    {"n": len(rows)}))
    else:
        import sqlite3 as driver

        first = session.scalar(text(f"SELECT coalesce(max(id), 0) + 1 FROM {table.name}"))
        ids = list(range(first, first + len(rows)))
    cursor = connection.cursor()
    try:
        if dialect.name == "postgresql":
            types = _column_types(cursor, table.name, columns)
            with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for row_id, row in zip(ids, rows, strict=True):
                    copy.write_row((row_id, *row.values()))
        else:
            convert = [(index, processor) for index, name in enumerate(columns)
                       if (processor := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))]
            values = [[row_id, *row.values()] for row_id, row in zip(ids, rows, strict=True)]
            for value in values:
                for index, processor in convert:
                    value[index] = processor(value[index])
            cursor.executemany(f"INSERT INTO {table.name} ({', '.join(columns)}) "
                               f"VALUES ({', '.join('?' * len(columns))})", values)
    except driver.Error as exc:
        raise DBAPIError.instance(f"INSERT INTO {table.name}", None, exc, driver.Error) from exc
    finally:
        cursor.close()
    return ids


_column_type_oids: dict[tuple[str, tuple[str, ...]], list[int]] = {}


def _column_types(cursor, table_name: str, columns: tuple[str, ...]) -> list[int]:
    """The PostgreSQL type OIDs of a table's columns (a binary COPY sends each value as its
    column's type), read once per process: the tables insert_rows fills have built-in types
    only, whose OIDs are the same in every database (a column of a type made by CREATE TYPE
    would need them read per database)."""
    key = (table_name, columns)
    if key not in _column_type_oids:
        cursor.execute(f"SELECT {', '.join(columns)} FROM {table_name} LIMIT 0")
        _column_type_oids[key] = [column.type_code for column in cursor.description]
    return _column_type_oids[key]
