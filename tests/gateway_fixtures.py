"""Fixtures that start whole Tollgate instances (see harness.py): once per session per database."""
from __future__ import annotations

import contextlib
import os
import uuid

import pytest
from harness import Gateway
from helpers import balance_nano, new_customer
from mail_server import MailServer

SQLITE = "sqlite"
POSTGRES = "postgresql"


def _databases():
    names = [SQLITE]
    if os.environ.get("TOLLGATE_TEST_POSTGRES_URL"):
        names.append(POSTGRES)
    return names


@contextlib.contextmanager
def _fresh_database(kind):
    """A database URL for one gateway instance: None (SQLite under its own TOLLGATE_HOME), or a
    PostgreSQL database created for it and dropped afterwards."""
    if kind == SQLITE:
        yield None
        return
    import sqlalchemy as sa

    admin_url = os.environ["TOLLGATE_TEST_POSTGRES_URL"]
    name = f"tollgate_gw_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", params=_databases())
def gateway_kind(request):
    """Which database the gateway instances of this part of the session use."""
    return request.param


@pytest.fixture(scope="session")
def gateway_database(gateway_kind):
    """The database of the session's shared instance."""
    with _fresh_database(gateway_kind) as url:
        yield url


@pytest.fixture
def database_independent(gateway_kind):
    """For a test whose behaviour does not depend on the database (a request nginx or the access
    phase refuses, a header that crosses or not, what a client parses): it runs once, against the
    SQLite instance."""
    if gateway_kind != SQLITE:
        pytest.skip("does not depend on the database: run against the SQLite instance only")


@pytest.fixture
def own_database(gateway_kind):
    """A database for an instance of a test's own: never the shared instance's, whose secret key
    (and so whose encrypted provider keys) a second TOLLGATE_HOME does not have."""
    with _fresh_database(gateway_kind) as url:
        yield url


@pytest.fixture
def own_gateway(tmp_path, own_database):
    """A running instance of a test's own, for tests that break it."""
    gw = Gateway(tmp_path / "gw", own_database).start()
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def mail_server():
    """A real SMTP server the shared instance sends the console's mail to."""
    server = MailServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway(gateway_database, tmp_path_factory, mail_server):
    """One running instance shared by the tests of a session (each test uses its own account).
    Its console mails through mail_server."""
    gw = Gateway(tmp_path_factory.mktemp("gateway"), gateway_database,
                 {"TOLLGATE_SMTP_URL": mail_server.url}).start()
    yield gw
    gw.stop()


@pytest.fixture
def gw_customer(gateway):
    """A fresh account with $10 and a key: (email, key)."""
    return new_customer(gateway)


@pytest.fixture
def gw_funded_key(gateway, gw_customer):
    """gw_customer's key and the live balance before the test: (key, balance_nano)."""
    _, key = gw_customer
    return key, balance_nano(gateway, key)
