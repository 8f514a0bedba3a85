"""Fixtures for the control-plane tests: a real redis-server and real databases, started once per
session. SQLite always; PostgreSQL too when TOLLGATE_TEST_POSTGRES_URL is set (e.g.
postgresql+psycopg://postgres@127.0.0.1:5432/test): a fresh database is created for the session
and dropped after it."""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import redis
from argon2 import PasswordHasher
from click.testing import CliRunner
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import accounts, passwords
from control_plane.accounts import api_keys as keys
from control_plane.app import create_app
from control_plane.billing import ledger
from control_plane.billing.usage_drain import UsageDrain
from control_plane.catalog import upstreams as catalog
from control_plane.hot import connection, credits, publish, redis_keys
from control_plane.models import Account, ApiKey, Base, PriceVersion
from control_plane.money import usd_to_nano

POSTGRES_URL = os.environ.get("TOLLGATE_TEST_POSTGRES_URL")
DATABASES = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("redis")
    port = _free_port()
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    probe = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            probe.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.02)
    probe.close()
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis, emptied for this test."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


def _environment(home, redis_url, database_url) -> dict[str, str]:
    return {
        "TOLLGATE_HOME": str(home),
        "TOLLGATE_REDIS_URL": redis_url,
        "TOLLGATE_DATABASE_URL": database_url,
    }


@pytest.fixture(scope="session", params=DATABASES)
def migrated_database(request, tmp_path_factory):
    """A database at the newest schema, for the whole session."""
    home = tmp_path_factory.mktemp("database")
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'tollgate.db'}"
        drop = None
    else:
        name = f"tollgate_test_{secrets.token_hex(4)}"
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

        def drop():
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.dispose()

    db.upgrade(settings_module.load(_environment(home, "redis://unused", url)))
    yield url
    db.dispose_engines()
    if drop is not None:
        drop()


@pytest.fixture
def database_url(migrated_database):
    """The session's database, emptied of every row a test makes (the system ledger accounts the
    migration created stay)."""
    with db.engine_for(migrated_database).begin() as connection, _audit_log_writable(connection):
        for table in reversed(Base.metadata.sorted_tables):
            if table.name == "ledger_accounts":
                connection.execute(delete(table).where(table.c.account_id.is_not(None)))
            else:
                connection.execute(delete(table))
    return migrated_database


@contextmanager
def _audit_log_writable(connection):
    """Lift the append-only triggers (audit log, invoices) for this transaction (tests empty every table):
    PostgreSQL skips user triggers in replica mode; SQLite's are dropped and made again."""
    if connection.dialect.name != "sqlite":
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        yield
        return
    triggers = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                       "AND tbl_name IN ('audit_log', 'invoices')")).all()
    for name, _sql in triggers:
        connection.execute(text(f'DROP TRIGGER "{name}"'))
    yield
    for _name, sql in triggers:
        connection.execute(text(sql))


@pytest.fixture
def tollgate_env(tmp_path, redis_url, database_url) -> dict[str, str]:
    return _environment(tmp_path / "home", redis_url, database_url)


@pytest.fixture
def settings(tollgate_env) -> settings_module.Settings:
    return settings_module.load(tollgate_env)


@pytest.fixture
def redis_client(settings) -> redis.Redis:
    return connection.client(settings)


# argon2-cffi's recommended parameters take most of a second a hash on a busy 2-core machine, and
# an admin's sign-in makes two. The in-process app's tests hash with the cheapest argon2id: its
# parameters are not what they test (a hash's replacement at login is tested against an instance).
CHEAP_PASSWORD_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def app(settings, monkeypatch):
    monkeypatch.setattr(passwords, "_hasher", CHEAP_PASSWORD_HASHER)
    return create_app({"TESTING": True, "TOLLGATE_SETTINGS": settings})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def cli(tollgate_env):
    """invoke(*args) runs `tollgate args…` with this test's environment."""
    from control_plane.cli.main import main

    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(main, list(args), env=tollgate_env, input=input)

    return invoke


@dataclass(frozen=True)
class Customer:
    account: Account
    key: ApiKey
    plaintext: str

    def shard(self, settings) -> int:
        return redis_keys.shard_of(self.account.id, settings.redis_shards)


@pytest.fixture
def make_customer(settings):
    """make_customer(email, deposit_usd, limit_usd): an account with a deposit and a key, all
    committed and published to Redis."""

    def make(email="alice@example.com", deposit_usd="10", limit_usd=None) -> Customer:
        with db.session_scope(settings) as session:
            account = accounts.create_account(session, email)
            if deposit_usd:
                amount = usd_to_nano(deposit_usd)
                ledger.credit(session, "deposit", account.id, amount, f"test-deposit:{email}", "Test deposit")
            limit = None if limit_usd is None else usd_to_nano(limit_usd)
            key, plaintext = keys.create_key(session, account, "test key", keys.KeyLimits(spend_nano=limit))
        with db.session_scope(settings) as session:
            publish.publish_key(session, settings, key)
            credits.apply_unpublished(session, settings)
            account = session.get(Account, account.id)
        return Customer(account, key, plaintext)

    return make


@pytest.fixture
def customer(make_customer) -> Customer:
    return make_customer()


@pytest.fixture
def drain(settings) -> UsageDrain:
    """The usage worker's drain of this test's Redis into its database, its groups created."""
    usage_drain = UsageDrain(settings, "test-consumer")
    usage_drain.ensure_groups()
    return usage_drain


@pytest.fixture
def price_version(settings) -> PriceVersion:
    """Model 'test-chat', charged at cost, with one route to provider 'test' (127.0.0.1): the
    route's cost version, input $0.15, cached $0.075, output $0.60 per 1M tokens, other prices
    defaulted (the price version its records name)."""
    with db.session_scope(settings) as session:
        catalog.upsert_provider(session, settings, "test", "openai", "http://127.0.0.1:9/v1", "upstream-secret")
        prices = {"input": usd_to_nano("0.15"), "cached_input": usd_to_nano("0.075"), "output": usd_to_nano("0.60")}
        model = catalog.upsert_model(session, "test-chat", "test", prices)
        return catalog.current_cost(session, catalog.routes_of(session, model.id)[0].id)
pytest_plugins = ["gateway_fixtures", "evm_fixtures", "browser"]


@pytest.fixture(params=DATABASES)
def empty_database(request, tmp_path):
    """The URL of a new, empty database (SQLite; PostgreSQL too when configured), for migrations."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.db'}"
        return
    name = f"tollgate_migrate_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()
