"""`tollgate up`: starts Redis, migrates the database, starts nginx, gunicorn, the usage
worker and, when a deposit chain is configured, the chain watcher; prints the gateway URL and the
demo key, and stops everything cleanly on Ctrl-C or SIGTERM. A process that dies is restarted
(with a growing pause) and its death logged.

Roles split one machine's set across several (`tollgate up --role …`): `all` (the default) runs
everything; `control` runs gunicorn (on TOLLGATE_CONTROL_LISTEN), the worker and the chain
watcher; `gateway` runs nginx and the replay of its own usage journal, pointed at the shared
Redis (TOLLGATE_REDIS_URL), database and control plane (TOLLGATE_CONTROL_PLANE). Only `all`
may run a Redis of its own."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from ..deposits.chain_watch import watched_chains
from ..settings import Settings
from . import nginx_conf

STOP_TIMEOUT_SECONDS = 15
STABLE_SECONDS = 60  # a child that ran this long before dying is restarted after the shortest pause


def log(message: str) -> None:
    print(f"tollgate: {message}", file=sys.stderr, flush=True)


@dataclass
class Child:
    name: str
    argv: list[str]
    stop_signal: int = signal.SIGTERM
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started: float = 0.0
    log_path: Path | None = field(default=None)

    def start(self) -> None:
        self.started = time.monotonic()
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 (closed once the child has it)
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        if self.log_path:
            out.close()

    def restart_pause(self, now: float) -> float:
        """Seconds to wait before starting the child again after it died: growing while it keeps
        dying, back to the shortest once it had run for a while."""
        self.restarts = 1 if now - self.started >= STABLE_SECONDS else self.restarts + 1
        return min(30, 0.5 * 2 ** min(self.restarts, 6))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)

    def wait(self, deadline: float) -> None:
        if not self.proc:
            return
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"{self.name} did not stop in time; killing it")
            self.proc.kill()
            self.proc.wait()


def _venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def redis_conf(settings: Settings) -> str:
    return "\n".join([
        "port 0",
        f"unixsocket {settings.redis_socket}",
        "unixsocketperm 700",
        f"dir {settings.redis_dir}",
        f"logfile {settings.log_dir / 'redis.log'}",
        f"pidfile {settings.run_dir / 'redis.pid'}",
        "appendonly yes",
        "appendfsync everysec",
        "daemonize no",
        "",
    ])


ROLES = ("all", "control", "gateway")


def check_role(settings: Settings, role: str) -> None:
    """What a node of this role needs from the settings; RuntimeError naming what is missing."""
    if role == "all":
        return
    if settings.manage_redis:
        raise RuntimeError(f"a {role} node shares its Redis with the other nodes: set TOLLGATE_REDIS_URL")
    if settings.database_url.startswith("sqlite"):
        raise RuntimeError(f"a {role} node shares its database with the other nodes: set TOLLGATE_DATABASE_URL "
                           "to a PostgreSQL database")
    if role == "gateway" and not settings.control_plane:
        raise RuntimeError("a gateway node passes the console and the API to the control plane: set "
                           "TOLLGATE_CONTROL_PLANE to the host:port of a control node's TOLLGATE_CONTROL_LISTEN")
    if role == "control" and not settings.control_listen:
        raise RuntimeError("a control node serves the gateway nodes over TCP: set TOLLGATE_CONTROL_LISTEN "
                           "(such as 10.0.0.5:8000, on a private network)")


def children(settings: Settings, nginx_conf_path: Path | None, role: str = "all") -> list[Child]:
    logs = settings.log_dir
    result = []
    if settings.manage_redis:
        conf = settings.redis_dir / "redis.conf"
        conf.write_text(redis_conf(settings))
        result.append(Child("redis", ["redis-server", str(conf)], log_path=logs / "redis-stdout.log"))
    if role != "gateway":
        result += _control_children(settings)
    if role != "control":
        result.append(Child("nginx", [
            nginx_conf.nginx_binary(), "-p", str(settings.nginx_dir), "-c", str(nginx_conf_path),
            "-g", "daemon off;",
        ], stop_signal=signal.SIGQUIT, log_path=logs / "nginx-stdout.log"))
    if role == "gateway":
        # The control node's worker replays only the journal on its own disk.
        result.append(Child("journal", [_venv_bin("tollgate"), "journal", "replay", "--follow"],
                            log_path=logs / "journal.log"))
    return result


def _control_children(settings: Settings) -> list[Child]:
    logs = settings.log_dir
    result = [
        Child("gunicorn", [
            _venv_bin("gunicorn"), "--bind", settings.gunicorn_bind,
            "--workers", str(settings.gunicorn_workers), "--graceful-timeout", "10",
            # A streamed CSV of the request log may take minutes: no worker timeout cuts it.
            "--timeout", "0",
            "--control-socket", str(settings.run_dir / "gunicorn.ctl"),
            "--error-logfile", str(logs / "gunicorn.log"), "control_plane.app:create_app()",
        ], log_path=logs / "gunicorn.log"),
        # One consumer name for every worker this supervisor starts: a restarted worker records at
        # once the entries its killed predecessor had read, instead of claiming them after a minute.
        Child("worker", [_venv_bin("tollgate"), "worker", "--consumer", f"{socket.gethostname()}-up-{os.getpid()}"],
              log_path=logs / "worker.log"),
    ]
    if watched_chains(settings):
        result.append(Child("chain-watch", [_venv_bin("tollgate"), "chain", "watch"],
                            log_path=logs / "chain-watch.log"))
    return result


def wait_for_redis(settings: Settings, proc: subprocess.Popen | None, timeout: float = 15) -> None:
    from ..hot import connection

    ping = (lambda: connection.ping(settings)) if settings.redis_cluster else \
        redis.Redis.from_url(settings.redis_url, socket_timeout=1, **connection.tls_options(settings)).ping
    deadline = time.monotonic() + timeout
    while True:
        try:
            ping()
            return
        except redis.RedisError as exc:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"redis exited with status {proc.returncode}; see {settings.log_dir}/redis.log") from exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis did not answer at {','.join(settings.redis_cluster) or settings.redis_url}: "
                                   f"{exc}") from exc
            time.sleep(0.05)


def check_nginx(conf_path: Path, settings: Settings) -> None:
    result = subprocess.run([nginx_conf.nginx_binary(), "-t", "-q", "-p", str(settings.nginx_dir),
                             "-c", str(conf_path)], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"nginx rejected {conf_path}:\n{result.stderr.strip()}")


def prepare(settings: Settings) -> tuple[str | None, str | None]:
    """Migrates, publishes the configuration to Redis, ensures the demo data; returns the demo key
    and the link that sets the demo account's console password (None without the demo, or once
    it has one)."""
    from .. import db
    from ..hot import republish
    from . import demo

    db.upgrade(settings)
    demo_key = demo_link = None
    with db.session_scope(settings) as session:
        if settings.demo:
            demo_key = demo.ensure_demo(session, settings, settings.base_url)
            demo_link = demo.set_password_link(session, settings)
    with db.session_scope(settings) as session:
        republish.publish_all(session, settings)
    return demo_key, demo_link


def banner(settings: Settings, demo_key: str | None, demo_link: str | None = None, role: str = "all") -> str:
    if role == "control":
        return "\n".join(["", (f"  Tollgate control node: the control plane listens on {settings.control_listen} "
                                "for the gateway nodes (TOLLGATE_CONTROL_PLANE there);"),
                           f"    the worker drains usage; state: {settings.home}   logs: {settings.log_dir}",
                           "", "  Ctrl-C stops everything.", ""])
    lines = [
        "",
        f"  Tollgate is running at {settings.base_url}",
        f"    OpenAI protocol:    base_url = {settings.base_url}/v1",
        f"    Anthropic protocol: base_url = {settings.base_url}",
        f"    Console:            {settings.console_base_url}/console/",
        f"    Admin console:      {settings.console_base_url}/admin/   (an admin: tollgate admin create EMAIL)",
        f"    state: {settings.home}   logs: {settings.log_dir}",
    ]
    if demo_key:
        lines += [
            "",
            f"  Demo key (sandbox provider, works offline): {demo_key}",
            f"    curl {settings.base_url}/v1/chat/completions -H 'Authorization: Bearer {demo_key}' \\",
            "      -H 'Content-Type: application/json' \\",
            "      -d '{\"model\": \"sandbox-chat\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'",
        ]
    if demo_link:
        from .demo import DEMO_EMAIL

        lines += ["", f"  Console: log in as {DEMO_EMAIL} after setting its password (this link works once):",
                  f"    {demo_link}"]
    lines += ["", "  Ctrl-C stops everything.", ""]
    return "\n".join(lines)


class Supervisor:
    def __init__(self, settings: Settings, role: str = "all"):
        self.settings = settings
        self.role = role
        self.stopping = False
        self.children: list[Child] = []

    def _on_signal(self, signum, frame):
        self.stopping = True

    def _watch(self) -> None:
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                code = child.proc.poll() if child.proc else None
                if code is None and child.proc is not None:
                    continue
                if child.proc is not None:
                    pause = child.restart_pause(now)
                    log(f"{child.name} exited with status {code}; restarting in {pause:.1f}s")
                    child.proc = None
                    child.next_start = now + pause
                elif now >= child.next_start:
                    child.start()
            time.sleep(0.2)

    def _stop_all(self) -> None:
        # nginx first (finishes in-flight requests and their settlements), Redis last.
        for child in reversed(self.children):
            child.stop()
            child.wait(time.monotonic() + STOP_TIMEOUT_SECONDS)
            if child.name == "nginx":
                self._release_leases()

    def _release_leases(self) -> None:
        """A stopped node's leases go back at once, not after their TTL (the next start is a new
        node: its shared memory is gone)."""
        from ..hot import connection
        from ..hot.lease_reaper import LeaseReaper

        node_file = self.settings.run_dir / "nginx-node"
        if not node_file.exists():
            return
        try:
            released = LeaseReaper(connection.client(self.settings), self.settings.redis_shards).release_node(
                node_file.read_text().strip())
            log(f"returned {released} leases of the stopped gateway node")
        except redis.RedisError as exc:
            log(f"leases of the stopped node are left to expire: {exc}")

    def _claim_home(self) -> None:
        """One `tollgate up` per TOLLGATE_HOME."""
        pid_file = self.settings.run_dir / "tollgate.pid"
        try:
            other = int(pid_file.read_text())
            os.kill(other, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            pid_file.write_text(str(os.getpid()))
            return
        raise RuntimeError(f"tollgate is already running for {self.settings.home} (pid {other})")

    def run(self) -> int:
        settings = self.settings
        for directory in (settings.run_dir, settings.log_dir, settings.redis_dir, settings.nginx_dir,
                          settings.journal_dir):
            directory.mkdir(parents=True, exist_ok=True)
        check_role(settings, self.role)
        self._claim_home()
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        conf_path = None
        if self.role != "control":
            conf_path = nginx_conf.render(settings)
            check_nginx(conf_path, settings)
        self.children = children(settings, conf_path, self.role)
        try:
            if self.children and self.children[0].name == "redis":
                self.children[0].start()
                wait_for_redis(settings, self.children[0].proc)
            else:
                wait_for_redis(settings, None)
            # The control plane migrates and publishes; a gateway node finds both done.
            demo_key, demo_link = prepare(settings) if self.role != "gateway" else (None, None)
            for child in self.children:
                if child.proc is None:
                    child.start()
            print(banner(settings, demo_key, demo_link, self.role), flush=True)
            self._watch()
        finally:
            log("stopping")
            self._stop_all()
            (settings.run_dir / "tollgate.pid").unlink(missing_ok=True)
            log("stopped")
        return 0


def run(settings: Settings, role: str = "all") -> int:
    try:
        return Supervisor(settings, role).run()
    except RuntimeError as exc:
        log(str(exc))
        return 1
