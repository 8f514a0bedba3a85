"""Alembic environment: runs against settings.database_url (TOLLGATE_DATABASE_URL)."""
from alembic import context

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


def run_migrations_online() -> None:
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
