"""Revision 0006 turns each model into a fixed-price model with one route (its old provider and
upstream model) whose cost version copies its current price, and takes it back again."""

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from control_plane import db
from control_plane import settings as settings_module

NOW = "2026-11-30 12:00:00.000000+00:00"


def test_models_become_fixed_price_models_with_one_route(tmp_path, empty_database):
    url = empty_database
    config = Config(str(db.ALEMBIC_INI))
    config.attributes["settings"] = settings_module.load({"TOLLGATE_HOME": str(tmp_path), "TOLLGATE_DATABASE_URL": url})
    engine = create_engine(url)

    def rows(sql):
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]

    def reset_sequence(table):  # after rows inserted with their ids (PostgreSQL's serial does not see them)
        if engine.dialect.name == "postgresql":
            with engine.begin() as connection:
                connection.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))

    command.upgrade(config, "0005")
    with engine.begin() as connection:
        connection.execute(text(f"INSERT INTO providers (id, name, protocol, base_url, api_key_encrypted, created_at) "
                                f"VALUES (1, 'p', 'openai', 'http://127.0.0.1/v1', 'x', '{NOW}')"))
        connection.execute(text(f"INSERT INTO models (id, name, provider_id, upstream_model, max_output, max_input, "
                                f"created_at) VALUES (1, 'm', 1, 'm-upstream', 100, 1000, '{NOW}')"))
        # Two price versions: the newer (id 2, input $2, output $8 per 1M) is current.
        for version, (price_in, price_out) in enumerate([(1_000_000_000, 4_000_000_000),
                                                         (2_000_000_000, 8_000_000_000)], 1):
            connection.execute(text(f"INSERT INTO price_versions (id, model_id, input, cached_input, output, "
                                    f"created_at) VALUES ({version}, 1, {price_in}, 500000000, {price_out}, '{NOW}')"))
    for table in ("providers", "models", "price_versions"):
        reset_sequence(table)
    try:
        command.upgrade(config, "head")
        assert rows("SELECT name, at_cost, retry_on FROM models") == [("m", False, "429,500,502,503,504,529")]
        assert rows("SELECT id, model_id, provider_id, upstream_model, priority, weight FROM routes") == [
            (1, 1, 1, "m-upstream", 0, 1)]
        assert rows("SELECT id, model_id, route_id, input, cached_input, cache_write, output FROM price_versions "
                    "ORDER BY id") == [(1, 1, None, 1_000_000_000, 500_000_000, None, 4_000_000_000),
                                       (2, 1, None, 2_000_000_000, 500_000_000, None, 8_000_000_000),
                                       (3, 1, 1, 2_000_000_000, 500_000_000, None, 8_000_000_000)]
        with engine.begin() as connection:  # new models are at cost unless told otherwise
            connection.execute(text(f"INSERT INTO models (name, max_output, max_input, created_at) "
                                    f"VALUES ('new', 1, 1, '{NOW}')"))
        assert rows("SELECT name, at_cost FROM models ORDER BY id") == [("m", False), ("new", True)]
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM models WHERE name = 'new'"))

        command.downgrade(config, "0005")
        assert rows("SELECT name, provider_id, upstream_model FROM models") == [("m", 1, "m-upstream")]
        assert rows("SELECT count(*) FROM price_versions") == [(3,)]
    finally:
        engine.dispose()
