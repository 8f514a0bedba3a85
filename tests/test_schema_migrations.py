"""The migrations build exactly the schema models.py declares: every column, type, index and
constraint, on SQLite and PostgreSQL (a model changed without its Alembic revision fails here)."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from control_plane import db
from control_plane import settings as settings_module
from control_plane.models import Base


def test_the_migrated_schema_is_the_models_schema(empty_database, tmp_path):
    db.upgrade(settings_module.load({"TOLLGATE_HOME": str(tmp_path), "TOLLGATE_DATABASE_URL": empty_database}))
    engine = create_engine(empty_database)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
