"""Alembic environment: runs against settings.database_url (TOLLGATE_DATABASE_URL)."""
from alembic import context
from sqlalchemy import event

from control_plane import settings as settings_module
from control_plane.db import make_engine
from control_plane.models import Base

config = context.config
settings = config.attributes.get("settings") or settings_module.load()


def run_migrations_offline() -> None:
    context.configure(
        url=settings.database_url,
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _foreign_keys_off(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys=OFF")


def run_migrations_online() -> None:
    engine = make_engine(settings.database_url)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a SQLite table by dropping it, which SQLite refuses while other tables
        # reference it (and a transaction cannot turn the check off): the references are checked
        # once the revisions have run instead.
        event.listen(engine, "connect", _foreign_keys_off)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=True,
            )
            with context.begin_transaction():
                context.run_migrations()
                broken = sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration left rows referencing rows that do not exist: {broken}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
