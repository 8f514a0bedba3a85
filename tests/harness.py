"""A whole Tollgate instance for tests: `tollgate up` in a subprocess on free loopback ports,
with its own TOLLGATE_HOME, Redis, database, nginx, gunicorn and usage worker."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import redis
from redis.cluster import ClusterNode, RedisCluster

from control_plane import settings as settings_module
from control_plane.hot import connection

REPO = Path(__file__).resolve().parent.parent
TOLLGATE = str(Path(sys.executable).parent / "tollgate")


def wait_for(condition, timeout: float, what: str) -> None:
    """Until condition() is true, polling every half second; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, home: Path, database_url: str | None = None, extra_env: dict | None = None,
                 role: str = "all"):
        self.home = home
        self.role = role
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "TOLLGATE_HOME": str(home),
            "TOLLGATE_PORT": str(self.port),
            "TOLLGATE_NGINX_WORKERS": "2",
            "TOLLGATE_GUNICORN_WORKERS": "1",
        }
        if database_url:
            self.env["TOLLGATE_DATABASE_URL"] = database_url
        self.env.update(extra_env or {})
        self.proc: subprocess.Popen | None = None
        self.demo_key: str | None = None
        self.output_path = home / "up.out"

    @property
    def database_url(self) -> str:
        return self.env.get("TOLLGATE_DATABASE_URL") or f"sqlite:///{self.home / 'tollgate.db'}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> Gateway:
        self.home.mkdir(parents=True, exist_ok=True)
        self.output = open(self.output_path, "wb")  # noqa: SIM115 (open while the instance runs; stop() closes it)
        self.proc = subprocess.Popen([TOLLGATE, "up", "--role", self.role], env=self.env, stdout=self.output,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tollgate up exited {self.proc.returncode}:\n{self.log_text()}")
            if "Ctrl-C stops everything" in self.log_text() and self._healthy():
                self.demo_key = self._demo_key_from_banner()
                return self
            time.sleep(0.1)
        raise RuntimeError(f"tollgate up did not become ready:\n{self.log_text()}")

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.output.close()

    def log_text(self) -> str:
        return self.output_path.read_text(errors="replace") if self.output_path.exists() else ""

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def _demo_key_from_banner(self) -> str | None:
        for line in self.log_text().splitlines():
            if "Demo key" in line:
                return line.rsplit(" ", 1)[-1].strip()
        return None

    # -- operator CLI ------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`tollgate args…` with this instance's settings, in-process (the same commands, without a
        Python start-up per call; not from several threads at once)."""
        from click.testing import CliRunner

        from control_plane.cli.main import main

        env = {name: value for name, value in self.env.items() if name.startswith("TOLLGATE_")}
        run = CliRunner().invoke(main, list(args), env=env)
        if run.exception is not None and not isinstance(run.exception, SystemExit):
            raise run.exception
        result = subprocess.CompletedProcess(["tollgate", *args], run.exit_code, run.stdout, run.stderr)
        if check and result.returncode != 0:
            raise AssertionError(f"tollgate {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def create_customer(self, email: str, credit_usd: str, limit_usd: str | None = None, *key_args: str,
                        admin: bool = False) -> str:
        """An account (an admin's when `admin`) with a credited balance and a key; returns the key."""
        self.cli("account", "create", email, *(["--admin"] if admin else []))
        if credit_usd != "0":
            self.cli("credit", email, credit_usd, "--reason", "test credit")
        return self.create_key(email, limit_usd, *key_args)

    def create_key(self, email: str, limit_usd: str | None = None, *key_args: str) -> str:
        """A key of the account (`tollgate key create` options `key_args`); returns it."""
        args = ["key", "create", email, *key_args]
        if limit_usd is not None:
            args += ["--limit-usd", limit_usd]
        return self.cli(*args).stdout.strip().splitlines()[-1]

    def balance_nano(self, email: str) -> int:
        out = json.loads(self.cli("balance", email).stdout, parse_float=Decimal)
        return int(Decimal(out["balance"]) * 10**9)

    def chat(self, key: str, body: dict) -> int:
        """POSTs a chat completion with `key`, reads the whole answer, returns the status."""
        req = urllib.request.Request(f"{self.url}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
                return r.status
        except urllib.error.HTTPError as e:
            e.read()
            return e.code

    def usage_rows(self, key: str) -> list[dict]:
        """Every usage row of the key's account, newest first (GET /api/v1/usage, all pages)."""
        rows, before = [], None
        while True:
            path = "/api/v1/usage?limit=100" + (f"&before={before}" if before else "")
            req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {key}"})
            with urllib.request.urlopen(req, timeout=20) as r:
                page = json.loads(r.read())
            rows += page["data"]
            if not page["has_more"]:
                return rows
            before = page["next_before"]

    def reconciled(self) -> tuple[bool, str]:
        """`tollgate reconcile`: whether every account's drift is 0, and the report."""
        result = self.cli("reconcile", "--json", check=False)
        return result.returncode == 0, result.stdout

    # -- processes -----------------------------------------------------------------------------
    def worker_pids(self) -> list[int]:
        """The pids of this instance's usage workers (`tollgate worker` with its TOLLGATE_HOME)."""
        out = []
        for proc in os.listdir("/proc"):
            if not proc.isdigit():
                continue
            try:
                argv = Path(f"/proc/{proc}/cmdline").read_bytes().split(b"\0")
                env = Path(f"/proc/{proc}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if (any(a.endswith(b"/tollgate") for a in argv) and b"worker" in argv
                    and f"TOLLGATE_HOME={self.home}".encode() in env):
                out.append(int(proc))
        return out

    # -- stores --------------------------------------------------------------------------------
    def redis(self) -> redis.Redis | RedisCluster:
        """A client of this instance's Redis: its own, the Redis Cluster TOLLGATE_REDIS_CLUSTER
        names, or TOLLGATE_REDIS_URL's (by TLS too, as the control plane reaches it)."""
        seeds = self.env.get("TOLLGATE_REDIS_CLUSTER")
        tls = self.env.get("TOLLGATE_REDIS_URL", "").startswith("rediss://")
        if seeds and not tls:
            nodes = [ClusterNode(host, int(port)) for host, port in (seed.rsplit(":", 1) for seed in seeds.split(","))]
            return RedisCluster(startup_nodes=nodes, decode_responses=True)
        if seeds or self.env.get("TOLLGATE_REDIS_URL"):
            return connection.client(settings_module.load(self.env))
        return redis.Redis(unix_socket_path=str(self.home / "run" / "redis.sock"), decode_responses=True)

    def wait_drained(self, timeout: float = 20) -> None:
        """Until every usage stream is empty (the worker moved everything into SQL)."""
        r = self.redis()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if all(r.xlen(k) == 0 for k in r.scan_iter("tg:{*}:usage", count=10_000)):
                return
        raise AssertionError("usage streams were not drained in time")
