"""Fixtures that start whole Tollgate instances (see harness.py): once per session per database."""
from __future__ import annotations

import os
import uuid

import pytest

from harness import Gateway

SQLITE = "sqlite"
POSTGRES = "postgresql"


def _databases():
    names = [SQLITE]
    if os.environ.get("TOLLGATE_TEST_POSTGRES_URL"):
        names.append(POSTGRES)
    return names


@pytest.fixture(scope="session", params=_databases())
def gateway_database(request, tmp_path_factory):
    """A database URL for one gateway instance: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == SQLITE:
        yield None  # tollgate's default: SQLite under TOLLGATE_HOME
        return
    import sqlalchemy as sa

    admin_url = os.environ["TOLLGATE_TEST_POSTGRES_URL"]
    name = f"tollgate_gw_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def gateway(gateway_database, tmp_path_factory):
    """One running instance shared by the tests of a session (each test uses its own account)."""
    gw = Gateway(tmp_path_factory.mktemp("gateway"), gateway_database).start()
    yield gw
    gw.stop()


@pytest.fixture
def gw_customer(gateway):
    """A fresh account with $10 and a key: (email, key)."""
    email = f"c{uuid.uuid4().hex[:12]}@example.com"
    return email, gateway.create_customer(email, "10")
