"""Revision 0009 fills the overview's usage rollup from the usage rows there are: after a downgrade
to 0008 and an upgrade again, the rollup is the one the drain had kept, row for row."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from alembic import command
from alembic.config import Config
from helpers import COST, drain_all, usage_entry, usage_record
from sqlalchemy import create_engine, select, text
from test_admin_overview import at_ms, charged, refused

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import accounts
from control_plane.accounts import api_keys as keys
from control_plane.billing.usage_drain import UsageDrain
from control_plane.catalog import upstreams as catalog
from control_plane.hot import redis_keys
from control_plane.models import UsageRollup, utcnow
from control_plane.money import usd_to_nano


def _rollup(url: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(
                select(UsageRollup.__table__).order_by(*UsageRollup.__table__.primary_key.columns))]
    finally:
        engine.dispose()


def test_the_rollup_is_filled_from_the_usage_rows(tmp_path, empty_database, redis_url):
    settings = settings_module.load({"TOLLGATE_HOME": str(tmp_path), "TOLLGATE_DATABASE_URL": empty_database,
                                     "TOLLGATE_REDIS_URL": redis_url})
    config = Config(str(db.ALEMBIC_INI))
    config.attributes["settings"] = settings
    db.upgrade(settings)
    try:
        with db.session_scope(settings) as session:
            catalog.upsert_provider(session, settings, "test", "openai", "http://127.0.0.1:9/v1", "upstream-secret")
            model = catalog.upsert_model(session, "test-chat", "test",
                                         {"input": usd_to_nano("0.15"), "cached_input": usd_to_nano("0.075"),
                                          "output": usd_to_nano("0.60")})
            cost = catalog.current_cost(session, catalog.routes_of(session, model.id)[0].id)
            model = catalog.set_price(session, "test-chat", {"input": usd_to_nano("0.20"), "output": usd_to_nano("0.80")})
            price = catalog.current_price(session, model.id)
            account = accounts.create_account(session, "alice@example.com")
            key, _plaintext = keys.create_key(session, account, "k")
        owner = SimpleNamespace(account=account, key=key)
        now = utcnow()
        records = [charged(owner, price, cost, f"r{n}", now - timedelta(days=n % 3, minutes=n)) for n in range(7)]
        records += [refused(owner, "refused", now), usage_record(owner, cost, "at-cost", ts=at_ms(now), pcost=str(COST))]
        stream = redis_keys.usage_stream(redis_keys.shard_of(account.id, settings.redis_shards))
        drain = UsageDrain(settings, "migration-test")
        drain.ensure_groups()
        drain.redis.xadd(stream, usage_entry(*records))
        assert drain_all(drain) == 9
        kept = _rollup(empty_database)
        assert len(kept) == 4  # three days of charged requests (today's with the one at cost), today's refused one
        db.dispose_engines()

        command.downgrade(config, "0008")
        engine = create_engine(empty_database)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM usage")).scalar() == 9
        engine.dispose()
        command.upgrade(config, "head")
        assert _rollup(empty_database) == kept
    finally:
        db.dispose_engines()
