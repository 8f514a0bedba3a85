"""The `redis_cluster` fixture: a real Redis Cluster on loopback (tests/redis_cluster.py), one
per test module, skipped where redis-server or redis-cli is missing. A test module imports it:
`from cluster_fixtures import redis_cluster  # noqa: F401`."""
from __future__ import annotations

import pytest
import redis_cluster as cluster


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    """Three masters with a replica each; killing a master (kill_master_for) leaves it killed for
    the rest of the module."""
    if not cluster.available():
        pytest.skip("redis-server and redis-cli are needed for a Redis Cluster")
    nodes = cluster.LoopbackCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield nodes
    nodes.stop()
