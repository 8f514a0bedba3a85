"""Fixtures that start whole Tollgate instances (see harness.py): once per session per database."""
from __future__ import annotations

import contextlib
import os
import tempfile
import uuid

import pytest
import sqlalchemy as sa
from harness import Gateway
from helpers import balance_nano, new_customer
from mail_server import MailServer

from control_plane import db
from control_plane import settings as settings_module

SQLITE = "sqlite"
POSTGRES = "postgresql"


def _databases():
    names = [SQLITE]
    if os.environ.get("TOLLGATE_TEST_POSTGRES_URL"):
        names.append(POSTGRES)
    return names


# The name of this process's PostgreSQL database at the newest schema, once its first instance
# asked for one (each xdist worker has its own); dropped when the session ends.
_postgres_template: list[str] = []


def _database_url(admin_url: str, name: str) -> str:
    return sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _migrated_template(admin, admin_url: str) -> str:
    """This process's template database (see _postgres_template), migrated once: an instance's
    database made from it is at the newest schema, and its `tollgate up` finds nothing to migrate."""
    if not _postgres_template:
        name = f"tollgate_template_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        _postgres_template.append(name)
        with tempfile.TemporaryDirectory() as home:
            db.upgrade(settings_module.load({"TOLLGATE_HOME": home, "TOLLGATE_REDIS_URL": "redis://unused",
                                             "TOLLGATE_DATABASE_URL": _database_url(admin_url, name)}))
    return _postgres_template[0]


def _drop_database(admin, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pytest_sessionfinish(session):
    if _postgres_template:
        admin = sa.create_engine(os.environ["TOLLGATE_TEST_POSTGRES_URL"], isolation_level="AUTOCOMMIT")
        _drop_database(admin, _postgres_template.pop())
        admin.dispose()


@contextlib.contextmanager
def _fresh_database(kind, migrated: bool = True):
    """A database URL for one gateway instance: None (SQLite under its own TOLLGATE_HOME), or a
    PostgreSQL database created for it (at the newest schema when `migrated`, else empty) and
    dropped afterwards."""
    if kind == SQLITE:
        yield None
        return
    admin_url = os.environ["TOLLGATE_TEST_POSTGRES_URL"]
    name = f"tollgate_gw_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    template = f' TEMPLATE "{_migrated_template(admin, admin_url)}"' if migrated else ""
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{template}'))
    try:
        yield _database_url(admin_url, name)
    finally:
        _drop_database(admin, name)
        admin.dispose()


@pytest.fixture(scope="session", params=_databases())
def gateway_kind(request):
    """Which database the gateway instances of this part of the session use."""
    return request.param


@pytest.fixture(scope="session")
def gateway_database(gateway_kind):
    """The database of the session's shared instance: PostgreSQL's created empty, for its `tollgate up`
    to migrate as at an installation."""
    with _fresh_database(gateway_kind, migrated=False) as url:
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
