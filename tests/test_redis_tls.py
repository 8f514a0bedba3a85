"""A Redis reached by TLS (TOLLGATE_REDIS_URL=rediss://…, TOLLGATE_REDIS_CA): a real redis-server,
and a Redis Cluster, serving TLS only, with a certificate of a CA made here. The gateway's hot
path and the control plane verify it; a client without TLS, or trusting another CA, gets
nothing."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import redis
import redis_cluster as cluster
from harness import Gateway, free_port, wait_for
from helpers import CACHE_SECONDS
from load import call
from tls_certificates import LOOPBACK, TlsFiles, make_tls_files

from control_plane import settings as settings_module
from control_plane.hot import connection

COST = 18_150  # load.body's chat at sandbox-chat's demo prices (tests/test_multi_node.py)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_redis(tls_files, tmp_path_factory) -> int:
    """The port of a redis-server that speaks TLS only, with tls_files' certificate."""
    directory = tmp_path_factory.mktemp("redis-tls")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", LOOPBACK,
         *cluster.tls_arguments(tls_files), "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=(directory / "redis.log").open("wb"), stderr=subprocess.STDOUT)
    client = redis.Redis(host=LOOPBACK, port=port, ssl=True, ssl_ca_certs=str(tls_files.ca))
    wait_for(lambda: _answers(client), 10, "redis-server with TLS")
    yield port
    proc.terminate()
    proc.wait()


def _answers(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def env_for(port: int, ca_file: Path) -> dict[str, str]:
    return {"TOLLGATE_REDIS_URL": f"rediss://{LOOPBACK}:{port}/0", "TOLLGATE_REDIS_CA": str(ca_file)}


def bills_three_requests(gw: Gateway) -> None:
    """Three chats charged exactly, drained into SQL, reconciled with drift 0."""
    email = "tls@example.com"
    key = gw.create_customer(email, "1")
    time.sleep(CACHE_SECONDS)
    assert [call(gw.url, key, i)[0] for i in range(3)] == [200] * 3
    gw.wait_drained()
    assert [row["cost_nano"] for row in gw.usage_rows(key)] == [COST] * 3
    assert gw.balance_nano(email) == 1_000_000_000 - 3 * COST  # 999,945,550
    ok, report = gw.reconciled()
    assert ok, report


@pytest.mark.usefixtures("database_independent")
def test_the_gateway_bills_through_a_redis_reached_by_tls(tmp_path, own_database, tls_files, tls_redis):
    gw = Gateway(tmp_path / "gw", own_database, env_for(tls_redis, tls_files.ca)).start()
    try:
        bills_three_requests(gw)
        assert gw.redis().dbsize() > 0  # the hot state is in this Redis, reached by TLS
    finally:
        gw.stop()


@pytest.mark.usefixtures("database_independent")
def test_the_gateway_bills_through_a_redis_cluster_reached_by_tls(tmp_path, own_database, tls_files):
    """Every node TLS only (the cluster bus and replication too): the slot map's nodes are
    reached by TLS as the seeds are."""
    if not cluster.available():
        pytest.skip("redis-server and redis-cli are needed for a Redis Cluster")
    nodes = cluster.LoopbackCluster(tmp_path / "cluster", tls=tls_files).start()
    try:
        gw = Gateway(tmp_path / "gw", own_database, {
            "TOLLGATE_REDIS_CLUSTER": nodes.seeds, "TOLLGATE_REDIS_URL": f"rediss://{LOOPBACK}/0",
            "TOLLGATE_REDIS_CA": str(tls_files.ca)}).start()
        try:
            bills_three_requests(gw)
        finally:
            gw.stop()
    finally:
        nodes.stop()


def test_redis_by_tls_is_verified_and_tls_only(tls_files, tls_redis):
    port, ca_file, other_ca_file = tls_redis, tls_files.ca, tls_files.other_ca
    with pytest.raises(redis.ConnectionError):  # no TLS: the port does not speak plain Redis
        redis.Redis(host=LOOPBACK, port=port, socket_timeout=2).ping()
    trusting_other = settings_module.load(env_for(port, other_ca_file))
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        connection.client(trusting_other).ping()
    assert connection.client(settings_module.load(env_for(port, ca_file))).ping() is True


def test_a_ca_file_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(settings_module.SettingsError, match="TOLLGATE_REDIS_CA must name a readable file"):
        settings_module.load({"TOLLGATE_HOME": str(tmp_path), "TOLLGATE_REDIS_URL": "rediss://redis.internal:6380/0",
                              "TOLLGATE_REDIS_CA": str(tmp_path / "missing.pem")})
