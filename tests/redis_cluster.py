"""A real Redis Cluster on loopback for tests: three masters and a replica each, every node a
`redis-server --cluster-enabled yes` of its own on a free port, joined by `redis-cli --cluster
create`, by TLS only when given certificates (tls_certificates.TlsFiles).
TOLLGATE_REDIS_CLUSTER=cluster.seeds points Tollgate at it."""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path

import redis
from harness import free_port, wait_for
from redis.cluster import ClusterNode, RedisCluster

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
HOST = "127.0.0.1"
MASTERS = 3
NODES = MASTERS * 2  # each master with one replica
NODE_TIMEOUT_MS = 1000
BUS_OFFSET = 10000  # a node's cluster bus listens on its port + 10000


def tls_arguments(tls) -> list[str]:
    """redis-server's options to serve TLS with tls_certificates.TlsFiles `tls` (clients need no
    certificate of their own)."""
    return ["--tls-cert-file", str(tls.certificate), "--tls-key-file", str(tls.key),
            "--tls-ca-cert-file", str(tls.ca), "--tls-auth-clients", "no"]


def available() -> bool:
    """Whether this machine can start one (redis-server and redis-cli on PATH)."""
    return bool(REDIS_SERVER and REDIS_CLI)


class LoopbackCluster:
    """The cluster's processes; start() returns once every node says cluster_state:ok."""

    def __init__(self, directory: Path, tls=None):
        self.directory = directory
        self.tls = tls
        # redis-py's options for its nodes: TLS, trusting the test's CA.
        self.client_options = {"ssl": True, "ssl_ca_certs": str(tls.ca)} if tls else {}
        self.ports = [_node_port() for _ in range(NODES)]
        self.processes: dict[int, subprocess.Popen] = {}

    @property
    def seeds(self) -> str:
        """host:port,host:port… for TOLLGATE_REDIS_CLUSTER."""
        return ",".join(f"{HOST}:{port}" for port in self.ports)

    def start(self, timeout: float = 30) -> LoopbackCluster:
        try:
            for port in self.ports:
                self._start_node(port)
            for port in self.ports:
                wait_for(lambda port=port: self._answers(port), timeout, f"redis-server on port {port}")
            subprocess.run(
                [REDIS_CLI, *(["--tls", "--cacert", str(self.tls.ca)] if self.tls else []),
                 "--cluster", "create", *(f"{HOST}:{port}" for port in self.ports),
                 "--cluster-replicas", "1", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
            )
            wait_for(self._formed, timeout, "the cluster to form")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def flush(self) -> None:
        """Empty every master (the replicas follow)."""
        for port in self._live_ports():
            node = self.node(port)
            if node.info("replication")["role"] == "master":
                node.flushall()

    # -- clients -------------------------------------------------------------------------------
    def client(self) -> RedisCluster:
        return RedisCluster(startup_nodes=[ClusterNode(HOST, port) for port in self._live_ports()],
                            decode_responses=True, **self.client_options)

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host=HOST, port=port, decode_responses=True, socket_timeout=2, **self.client_options)

    # -- failover ------------------------------------------------------------------------------
    def master_for(self, key: str) -> int:
        """The port of the master serving key's slot."""
        return self._master_of_slot(self._slot(key))

    def replicated(self, key: str) -> bool:
        """Whether the master serving key's slot has a replica in sync (one that can take over)."""
        return int(self.node(self.master_for(key)).info("replication")["connected_slaves"]) > 0

    def kill_master_for(self, key: str) -> int:
        """SIGKILL the master serving key's slot; its port."""
        port = self.master_for(key)
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait()
        return port

    def wait_promoted(self, key: str, killed_port: int, timeout: float = 30) -> int:
        """Until a replica of the killed master serves key's slot and every live node says
        cluster_state:ok; the new master's port."""
        slot = self._slot(key)
        promoted: list[int] = []

        def replaced() -> bool:
            try:
                port = self._master_of_slot(slot)
            except redis.RedisError:
                return False
            promoted[:] = [port]
            return port != killed_port and self._all_ok()

        wait_for(replaced, timeout, f"a replica to take over slot {slot} from port {killed_port}")
        return promoted[0]

    # -- internals -----------------------------------------------------------------------------
    def _start_node(self, port: int) -> None:
        directory = self.directory / str(port)
        directory.mkdir(parents=True, exist_ok=True)
        ports = (["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes", "--tls-replication", "yes",
                  *tls_arguments(self.tls)] if self.tls else ["--port", str(port)])
        self.processes[port] = subprocess.Popen(
            [REDIS_SERVER, *ports, "--bind", HOST, "--dir", str(directory),
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--cluster-replica-validity-factor", "0",
             "--save", "", "--appendonly", "no"],
            stdout=open(directory / "redis.log", "wb"),  # noqa: SIM115 (the child keeps it)
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )

    def _live_ports(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def _answers(self, port: int) -> bool:
        try:
            return bool(self.node(port).ping())
        except redis.RedisError:
            return False

    def _formed(self) -> bool:
        """Every slot served, every node agreeing, every replica in sync with its master."""
        try:
            replicas_linked = all(
                self.node(port).info("replication").get("master_link_status", "up") == "up" for port in self.ports
            )
            return replicas_linked and self._all_ok() and len(self._slot_map(self.ports[0])) == MASTERS
        except redis.RedisError:
            return False

    def _all_ok(self) -> bool:
        """Every live node says cluster_state:ok and agrees on who serves every slot."""
        try:
            ports = self._live_ports()
            if not all(self.node(port).cluster("info")["cluster_state"] == "ok" for port in ports):
                return False
            maps = [self._slot_map(port) for port in ports]
        except redis.RedisError:
            return False
        return all(slot_map == maps[0] for slot_map in maps)

    def _slot(self, key: str) -> int:
        return int(self.node(self._live_ports()[0]).cluster("keyslot", key))

    def _slot_map(self, port: int) -> list[tuple[int, int, int]]:
        """(first slot, last slot, master port) of each range, as one node sees it."""
        ranges = self.node(port).execute_command("CLUSTER SLOTS")
        return sorted((int(first), int(last), int(master[1])) for first, last, master, *_ in ranges)

    def _master_of_slot(self, slot: int) -> int:
        for port in self._live_ports():
            try:
                for first, last, master in self._slot_map(port):
                    if first <= slot <= last:
                        return master
            except redis.RedisError:
                continue
        raise redis.ClusterDownError(f"no live node knows slot {slot}")


def _node_port() -> int:
    """A free port whose cluster bus port (+10000, at most 65535) is free too."""
    while True:
        port = free_port()
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port + BUS_OFFSET))
            except OSError:
                continue
        return port
