"""Revisions 0002 and 0003 add the deposit tables and scan cursors and take them away again."""
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect

from control_plane import db
from control_plane import settings as settings_module


def test_deposit_revisions_upgrade_and_downgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'migrate.db'}"
    config = Config(str(db.ALEMBIC_INI))
    config.attributes["settings"] = settings_module.load({"TOLLGATE_HOME": str(tmp_path), "TOLLGATE_DATABASE_URL": url})

    def tables():
        engine = create_engine(url)
        try:
            return set(inspect(engine).get_table_names())
        finally:
            engine.dispose()

    command.upgrade(config, "head")
    assert {"deposits", "deposit_addresses", "chain_cursors", "accounts"} <= tables()
    command.downgrade(config, "0002")
    assert "chain_cursors" not in tables()
    command.downgrade(config, "0001")
    assert not {"deposits", "deposit_addresses"} & tables()
    assert "accounts" in tables()
    command.upgrade(config, "head")
    assert {"deposits", "deposit_addresses"} <= tables()
