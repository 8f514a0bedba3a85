"""The SQL engine, sessions and schema migrations.

Services take a Session and never commit; whoever opens `session_scope` owns the transaction.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from .settings import Settings

ALEMBIC_INI = Path(__file__).resolve().parent / "alembic.ini"
SQLITE_BUSY_TIMEOUT_MS = 10_000


def make_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    event.listen(engine, "connect", _configure_sqlite_connection)
    # sqlite3 would otherwise start transactions lazily and ignore SAVEPOINT; take the write
    # lock up front so a transaction that reads before it writes cannot fail half-way.
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


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


def upgrade(settings: Settings, revision: str = "head") -> None:
    """`alembic upgrade head` against settings.database_url."""
    config = Config(str(ALEMBIC_INI))
    config.attributes["settings"] = settings
    command.upgrade(config, revision)
