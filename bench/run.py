#!/usr/bin/env python3
"""Benchmark the Tollgate gateway against bare nginx proxy_pass, in one run.

Starts a fake provider (nginx + Lua, precomputed answers), a bare nginx proxy in front of it and
the gateway (`tollgate up`) configured to use it, runs wrk for each scenario against both, prints
req/s, p50, p99 and the gateway/bare ratio, and writes bench/results/latest.json.
See bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import fake_answers

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results" / "latest.json"
UPSTREAM_KEY = "upstream-secret"
WARMUP = "2s"
MAX_ERROR_RATE = 0.001  # above this share of non-2xx / socket errors the figures mean nothing
IDLE_CPU_SHARE = 0.05   # the servers count as idle below this share of one core
IDLE_TIMEOUT = 300
TRIM_EVERY = 0.5   # s
TRIM_KEEP = 100    # usage stream entries (settlement batches) kept in Redis during the runs
DRAIN_RECORDS = 20_000  # records measure_drain moves into SQL
NGINX = "openresty" if shutil.which("openresty") else "nginx"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
LUA_MODULES = "" if NGINX == "openresty" else (
    "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n"
    "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n")
NGINX_MAIN = """{modules}worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
{http}
}}
"""


@dataclass(frozen=True)
class Target:
    url: str
    key: str
    redis_socket: Path | None = None  # the gateway's Redis
    usage_streams: tuple = ()         # its usage streams (one per shard)
    route_health: str | None = None   # the key pattern of its nodes' route health (a cooled route)
    home: Path | None = None          # a gateway node's TOLLGATE_HOME


@dataclass(frozen=True)
class Scenario:
    path: str
    body: dict
    protocol: str   # "openai" or "anthropic": which credential headers to send
    expect: bytes   # a complete answer contains this
    direct: str | None = None  # a fallback scenario: the direct scenario its gateway req/s is compared with
    nodes: int = 1  # gateway nodes (and bare proxies) loaded at once, each by its own wrk


SYSTEM = "You are a concise assistant."
MESSAGES = [{"role": "user", "content": "Write one sentence about load balancers."}]


def openai_request(stream, model="bench-chat"):
    return {"model": model, "messages": [{"role": "system", "content": SYSTEM}, *MESSAGES],
            "max_tokens": 256, "stream": stream}


def anthropic_request(stream):
    return {"model": "bench-claude", "max_tokens": 256, "system": SYSTEM, "messages": MESSAGES,
            "stream": stream}


SCENARIOS = {
    "openai": Scenario("/v1/chat/completions", openai_request(False), "openai", b'"usage"'),
    "openai-stream": Scenario("/v1/chat/completions", openai_request(True), "openai", b"data: [DONE]"),
    # bench-fallback's first route answers 503 (bench-down), its second serves: two attempts.
    "openai-fallback": Scenario("/v1/chat/completions", openai_request(False, "bench-fallback"), "openai",
                                b'"usage"', direct="openai"),
    "anthropic": Scenario("/v1/messages", anthropic_request(False), "anthropic", b'"usage"'),
    "anthropic-stream": Scenario("/v1/messages", anthropic_request(True), "anthropic",
                                 b"event: message_stop"),
    # Two gateway nodes on one Redis and one PostgreSQL (a full node and a gateway-only node), a
    # wrk on each at once, against two bare proxies loaded the same way.
    "openai-two-nodes": Scenario("/v1/chat/completions", openai_request(False), "openai", b'"usage"', nodes=2),
}
DEFAULT_SCENARIOS = "openai,openai-stream,anthropic-stream,openai-two-nodes"
CHAT_PRICES = ("--input", "0.15", "--output", "0.60", "--cached-input", "0.075")


def credential_headers(protocol, key):
    if protocol == "openai":
        return {"Authorization": f"Bearer {key}"}
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


# ---------------------------------------------------------------- processes

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def tail(path, lines=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(proc, what, grace=20):
    """SIGTERM, then SIGKILL after `grace` s; anything left in the process group is reported."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            print(f"warning: {what} ignored SIGTERM for {grace}s; killing it", file=sys.stderr)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return
    print(f"warning: {what} left processes behind after it exited; terminating them", file=sys.stderr)
    os.killpg(proc.pid, signal.SIGTERM)


def cpu_seconds(roots):
    """CPU seconds used so far by the live processes below `roots` ({pid: name}), summed per
    "name/command", e.g. "gateway/redis-server"."""
    tick = os.sysconf("SC_CLK_TCK")
    procs = {}  # pid -> (command, parent pid, cpu seconds)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        procs[int(stat.parent.name)] = (text[text.index("(") + 1:text.rindex(")")], int(fields[1]),
                                        (int(fields[11]) + int(fields[12])) / tick)
    totals = {}
    for pid, (command, _, cpu) in procs.items():
        root = pid
        while root in procs and root not in roots:
            root = procs[root][1]
        if root in roots:
            name = f"{roots[root]}/{command}"
            totals[name] = totals.get(name, 0.0) + cpu
    return totals


def wait_idle(roots):
    """Wait until the servers stop using CPU (e.g. the usage worker has drained what the last
    run queued), so that one run's leftovers never land in the next."""
    deadline = time.monotonic() + IDLE_TIMEOUT
    before = sum(cpu_seconds(roots).values())
    while True:
        time.sleep(1)
        now = sum(cpu_seconds(roots).values())
        if now - before < IDLE_CPU_SHARE:
            return
        if time.monotonic() > deadline:
            print(f"warning: servers still busy after {IDLE_TIMEOUT}s; measuring anyway",
                  file=sys.stderr)
            return
        before = now


def usage_workers(home):
    """Pids of the `tollgate worker` processes (the SQL drain, off the request path) and the
    `tollgate journal replay --follow` of a gateway-only node (the worker replays a full node's
    journal) of the instance at TOLLGATE_HOME `home`; other instances on the machine are left
    alone."""
    pids = []
    own_home = f"TOLLGATE_HOME={home}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"tollgate") for a in argv) and (b"worker" in argv or b"replay" in argv) \
                and own_home in environ:
            pids.append(int(proc.name))
    return pids


def signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def redis_calls(socket_path):
    """Commands the gateway's Redis has served so far, by name ({} for the bare proxy)."""
    if socket_path is None or not shutil.which("redis-cli"):
        return {}
    done = subprocess.run(["redis-cli", "-s", str(socket_path), "info", "commandstats"],
                          check=False, capture_output=True, text=True)
    return {name: int(calls) for name, calls in re.findall(r"cmdstat_(\S+?):calls=(\d+)", done.stdout)}


def cpu_us_per_request(before, after, requests):
    spent = {name: (cpu - before.get(name, 0.0)) * 1e6 / max(requests, 1) for name, cpu in after.items()}
    return {name: round(us, 1) for name, us in sorted(spent.items()) if us >= 0.1}


class Bench:
    def __init__(self, stack, workdir, server_pin):
        self.stack = stack
        self.workdir = workdir
        self.server_pin = server_pin
        self.roots = {}  # pid -> name of every server started, for cpu_seconds()

    def start(self, what, cmd, log, env=None):
        log_file = self.stack.enter_context(open(log, "wb"))  # noqa: SIM115 (closed by the stack)
        proc = subprocess.Popen(self.server_pin + cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        self.stack.callback(stop, proc, what)
        self.roots[proc.pid] = what.split()[0]
        return proc

    @staticmethod
    def wait_ready(proc, what, log, ready, timeout):
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                sys.exit(f"{what} exited with status {proc.returncode}; {log}:\n{tail(log)}")
            if time.monotonic() > deadline:
                sys.exit(f"{what} not ready after {timeout}s; {log}:\n{tail(log)}")
            time.sleep(0.1)

    def nginx(self, name, template, lua=False, **fill):
        """Start nginx on a free port with bench/<template> as its http block; return the port."""
        directory = self.workdir / name
        (directory / "tmp").mkdir(parents=True)
        port = free_port()
        http = (BENCH / template).read_text()
        for placeholder, value in {"BENCH": BENCH, "DIR": directory, "PORT": port, **fill}.items():
            http = http.replace(f"@{placeholder}@", str(value))
        conf = directory / "nginx.conf"
        conf.write_text(NGINX_MAIN.format(modules=LUA_MODULES if lua else "", dir=directory, http=http))
        log = directory / "error.log"
        proc = self.start(name, [NGINX, "-p", str(directory), "-c", str(conf), "-g", "daemon off;"],
                          directory / "stdout.log")
        self.wait_ready(proc, name, log, lambda: port_open(port), timeout=10)
        return port

    def fake_upstream(self):
        answers = self.workdir / "answers"
        answers.mkdir()
        fake_answers.write(answers)
        return self.nginx("fake-upstream", "upstream.conf", lua=True, KEY=UPSTREAM_KEY, ANSWERS=answers)

    def start_gateway(self, name, role="all", **settings):
        """`tollgate up --role <role>` in a fresh TOLLGATE_HOME <workdir>/<name>; its URL and env."""
        tollgate = find_tollgate()
        port = free_port()
        # Never inherit TOLLGATE_* (a real Redis or database must not be touched by a benchmark).
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
        # TOLLGATE_ROUTE_FAILS: bench-fallback's failing first route must never cool (after 3
        # failures it would be skipped, and openai-fallback would measure a direct request).
        env.update({"TOLLGATE_HOME": str(self.workdir / name), "TOLLGATE_PORT": str(port),
                    "TOLLGATE_NGINX_WORKERS": "1", "TOLLGATE_DEMO": "1", "TOLLGATE_ROUTE_FAILS": "1000000000",
                    **settings})
        log = self.workdir / f"tollgate-up-{name}.log"
        what = f"{name} (tollgate up --role {role})"
        proc = self.start(what, [tollgate, "up", "--role", role], log, env)
        url = f"http://127.0.0.1:{port}"
        self.wait_ready(proc, what, log, lambda: http_ok(url + "/api/healthz"), timeout=90)
        return url, env

    def gateway(self, upstream_port, name="gateway", **settings):
        """A full node (`tollgate up`), configured for the fake upstream."""
        url, env = self.start_gateway(name, **settings)
        tollgate = find_tollgate()

        def cli(*args):
            done = subprocess.run([tollgate, *args], check=False, env=env, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"`tollgate {' '.join(args)}` failed ({done.returncode}):\n"
                         f"{done.stdout}{done.stderr}")
            return done.stdout

        upstream = f"http://127.0.0.1:{upstream_port}"
        cli("provider", "add", "bench", "--protocol", "openai", "--base-url", upstream + "/v1",
            "--api-key", UPSTREAM_KEY)
        cli("provider", "add", "bench-anthropic", "--protocol", "anthropic", "--base-url", upstream,
            "--api-key", UPSTREAM_KEY)
        cli("provider", "add", "bench-down", "--protocol", "openai", "--base-url", upstream + "/down/v1",
            "--api-key", UPSTREAM_KEY)
        cli("model", "add", "bench-chat", "--provider", "bench", *CHAT_PRICES)
        cli("model", "add", "bench-fallback", "--provider", "bench-down", *CHAT_PRICES)
        cli("route", "add", "bench-fallback", "--provider", "bench", "--priority", "1", *CHAT_PRICES)
        cli("model", "add", "bench-claude", "--provider", "bench-anthropic", "--input", "3",
            "--output", "15", "--cache-write", "3.75", "--cached-input", "0.30")
        cli("account", "create", "bench@example.com")
        cli("credit", "bench@example.com", "1000000", "--reason", "bench")
        key = cli("key", "create", "bench@example.com", "--name", "bench").strip().splitlines()[-1].strip()
        time.sleep(2)  # let the gateway see the new configuration
        return self.target(url, key, env)

    def gateway_pair(self, upstream_port, database_url):
        """Two gateway nodes as README "Running beyond one machine" runs them, on this machine: a
        full node with its control plane on TCP, and a gateway-only node (`--role gateway`) on
        the first's Redis, database, secret and control plane."""
        control = f"127.0.0.1:{free_port()}"
        first = self.gateway(upstream_port, "node-1", TOLLGATE_DATABASE_URL=database_url,
                             TOLLGATE_CONTROL_LISTEN=control)
        home = self.workdir / "node-1"
        url, _ = self.start_gateway(
            "node-2", role="gateway", TOLLGATE_DATABASE_URL=database_url, TOLLGATE_CONTROL_PLANE=control,
            TOLLGATE_DEMO="0", TOLLGATE_REDIS_URL=f"unix://{home / 'run' / 'redis.sock'}",
            TOLLGATE_SECRET_KEY=(home / "secret.key").read_text().strip())
        return [first, Target(url, first.key, first.redis_socket, first.usage_streams, first.route_health,
                              self.workdir / "node-2")]

    def target(self, url, key, env):
        from control_plane import settings  # the project's venv runs the gateway part
        from control_plane.hot import redis_keys
        shards = settings.load(env).redis_shards
        home = Path(env["TOLLGATE_HOME"])
        return Target(url, key, home / "run" / "redis.sock",
                      tuple(redis_keys.usage_stream(shard) for shard in range(shards)),
                      redis_keys.route_health("*"), home)


def find_tollgate():
    for candidate in (Path(sys.executable).parent / "tollgate", REPO / ".venv" / "bin" / "tollgate"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("tollgate")
    if not found:
        sys.exit("tollgate not found: install the project (.venv/bin/tollgate) or use --only-baseline")
    return found


def cpu_pins():
    """(server prefix, wrk prefix): servers on the first CPU, wrk on the last (DESIGN §10)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or not shutil.which("taskset"):
        return [], []
    return ["taskset", "-c", str(cpus[0])], ["taskset", "-c", str(cpus[-1])]


# ---------------------------------------------------------------- measuring

def probe(base_url, scenario, key, target):
    """One request before measuring: it must succeed and look complete."""
    request = urllib.request.Request(
        base_url + scenario.path, data=json.dumps(scenario.body).encode(), method="POST",
        headers={"Content-Type": "application/json", **credential_headers(scenario.protocol, key)})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
    except urllib.error.HTTPError as err:
        sys.exit(f"{target} answered {err.code} to {scenario.path}: {err.read()[:1000]!r}")
    except OSError as err:
        sys.exit(f"{target} failed on {scenario.path}: {err}")
    if scenario.expect not in body:
        sys.exit(f"{target}: answer to {scenario.path} lacks {scenario.expect!r}: {body[:1000]!r}")


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def to_ms(text):
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()
    return float(number) * UNIT_MS[unit]


def parse_wrk(out):
    def find(pattern, default=None):
        match = re.search(pattern, out, re.MULTILINE)
        if match is None and default is None:
            raise ValueError(f"wrk output has no match for {pattern!r}:\n{out}")
        return match.groups() if match else default

    socket_errors = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", ("0",))
    return {
        "rps": float(find(r"^Requests/sec:\s+([\d.]+)")[0]),
        "p50_ms": to_ms(find(r"^\s+50%\s+(\S+)")[0]),
        "p99_ms": to_ms(find(r"^\s+99%\s+(\S+)")[0]),
        "requests": int(find(r"^\s+(\d+) requests in")[0]),
        "non_2xx": int(find(r"^\s+Non-2xx or 3xx responses:\s+(\d+)", ("0",))[0]),
        "socket_errors": sum(map(int, socket_errors)),
    }


def redis_sockets(nodes):
    """The distinct Redis servers of `nodes` (targets): gateway nodes of one installation share one."""
    return list(dict.fromkeys(node.redis_socket for node in nodes if node.redis_socket))


def measure(nodes, scenario, args, wrk_pin, roots):
    """One recorded run of a wrk on each of `nodes` (targets) at once, after an unrecorded warm-up:
    wrk's figures (req/s and requests summed, the worst node's p50 and p99), the CPU each server
    process spent per request during it, and the gateway's Redis commands per request."""

    def wrk(node, duration):
        env = dict(os.environ, BENCH_BODY=json.dumps(scenario.body), BENCH_HEADERS="\n".join(
            f"{name}: {value}" for name, value in credential_headers(scenario.protocol, node.key).items()))
        cmd = wrk_pin + ["wrk", "-t1", f"-c{args.connections}", f"-d{duration}", "--latency",
                         "-s", str(BENCH / "post.lua"), node.url + scenario.path]
        done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout

    def wrk_all(duration):
        with ThreadPoolExecutor(len(nodes)) as pool:
            return list(pool.map(lambda node: wrk(node, duration), nodes))

    def calls():
        totals = {}
        for socket_path in redis_sockets(nodes):
            for name, n in redis_calls(socket_path).items():
                totals[name] = totals.get(name, 0) + n
        return totals

    wrk_all(WARMUP)
    cpu_before, calls_before = cpu_seconds(roots), calls()
    outs = wrk_all(args.duration)
    cpu_during, calls_during = cpu_seconds(roots), calls()
    each = [parse_wrk(out) for out in outs]
    result = {"rps": sum(r["rps"] for r in each), "p50_ms": max(r["p50_ms"] for r in each),
              "p99_ms": max(r["p99_ms"] for r in each),
              **{name: sum(r[name] for r in each) for name in ("requests", "non_2xx", "socket_errors")}}
    if len(each) > 1:
        result["rps_by_node"] = [r["rps"] for r in each]
    result["cpu_us_per_request"] = cpu_us_per_request(cpu_before, cpu_during, result["requests"])
    per_request = {name: (n - calls_before.get(name, 0)) / max(result["requests"], 1)
                   for name, n in calls_during.items()}
    result["redis_calls_per_request"] = {name: round(n, 2) for name, n in sorted(per_request.items())
                                         if n >= 0.01}
    errors = result["non_2xx"] + result["socket_errors"]
    result["failed"] = errors > MAX_ERROR_RATE * max(result["requests"], 1)
    if result["failed"]:
        print(f"\n!!! {errors} of {result['requests']} requests failed — these figures are "
              f"meaningless. wrk said:\n" + "\n".join(outs), file=sys.stderr)
    return result


class UsageTrimmer:
    """Stands in for a usage worker that keeps up while the real one is paused: trims the
    gateway's usage streams to their last TRIM_KEEP entries twice a second, so Redis holds about
    what it holds in production. Without it every record of a scenario piles up in Redis (a few
    hundred MB at 20,000 requests/s) and Redis's periodic snapshot forks and writes all of it on
    the measured core, in the middle of a gateway run."""

    def __init__(self, target, pin):
        self.target = target
        self.pin = pin
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        commands = "".join(f"XTRIM {stream} MAXLEN {TRIM_KEEP}\n" for stream in self.target.usage_streams)
        cli = subprocess.Popen(self.pin + ["redis-cli", "-s", str(self.target.redis_socket)],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        try:
            while not self.stopped.wait(TRIM_EVERY):
                cli.stdin.write(commands)
                cli.stdin.flush()
        finally:
            cli.stdin.close()
            cli.wait()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()


def journaled(homes):
    """Usage records in the usage journals of the gateway nodes at `homes` (a line of more than
    three tab-separated values; a batch's "sent" line has three)."""
    count = 0
    for home in homes:
        for path in (Path(home) / "journal").glob("*.tsv"):
            with path.open("rb") as journal:
                count += sum(1 for line in journal if line.count(b"\t") > 2)
    return count


def empty_streams(target):
    """Drop the records left in the gateway's usage streams: the paused worker then has only the
    journal replay to catch up on (the drain is measured on its own, measure_drain)."""
    subprocess.run(["redis-cli", "-s", str(target.redis_socket), "EVAL",
                    "for _, stream in ipairs(KEYS) do redis.call('XTRIM', stream, 'MAXLEN', 0) end",
                    str(len(target.usage_streams)), *target.usage_streams],
                   check=True, capture_output=True)


def measure_drain(postgres_url):
    """The usage worker's CPU µs a record to move usage records into SQL (bench/drain.py: 20,000
    records, one worker, on the servers' core), on SQLite as the single-node gateway, and on the
    two-node scenario's PostgreSQL server when it has one."""
    import drain

    pinned = os.sched_getaffinity(0)
    if len(pinned) >= 2:
        os.sched_setaffinity(0, {min(pinned)})
    try:
        figures = {"sqlite": drain.one_run(True, DRAIN_RECORDS, 20, 1)["cpu_us"]}
        if postgres_url:
            os.environ["TOLLGATE_BENCH_POSTGRES_URL"] = postgres_url
            drain.POSTGRES_URL = postgres_url
            figures["postgresql"] = drain.one_run(False, DRAIN_RECORDS, 20, 1)["cpu_us"]
    finally:
        os.sched_setaffinity(0, pinned)
    return figures


def cooled_routes(target):
    """The gateway's route health entries: none unless a route cooled. None of the bench's should
    (see TOLLGATE_ROUTE_FAILS in Bench.gateway): a cooled first route is skipped, and a fallback
    scenario would measure direct requests."""
    done = subprocess.run(["redis-cli", "-s", str(target.redis_socket), "--scan", "--pattern",
                           target.route_health], check=False, capture_output=True, text=True)
    return done.stdout.split()


def measure_scenario(name, targets, args, wrk_pin, roots, homes):
    """`args.repeat` recorded runs per target, the targets taking turns (bare, gateway, bare, …)
    so that a slow spell of the machine hits both; one row per target with the median run's
    figures, and on the gateway's row the median of the gateway/bare ratios of the pairs.

    The usage worker moves records from Redis into SQL after the fact, and replays each node's
    usage journal; it is paused while the scenario runs so the figures compare request paths,
    and UsageTrimmer keeps Redis at its production size meanwhile. After the runs the streams are
    emptied and the worker resumed: it reads the journal lines of every request of the runs, and
    that CPU, per request journaled, shows as "+N" (the drain's share is measured on its own,
    measure_drain). `homes`: the TOLLGATE_HOME of every gateway node started, whose workers are
    all paused (those of another scenario's nodes too: they share the core)."""
    scenario = SCENARIOS[name]
    for target_name, nodes in targets.items():
        for node in nodes:
            probe(node.url, scenario, node.key, target_name)
    # One target per gateway Redis (the nodes of one installation share it).
    gateways = list({node.redis_socket: node for nodes in targets.values() for node in nodes
                     if node.redis_socket}.values())
    workers = [pid for home in homes for pid in usage_workers(home)]
    own_homes = [node.home for nodes in targets.values() for node in nodes if node.home]
    runs = {target_name: [] for target_name in targets}
    signal_all(workers, signal.SIGSTOP)
    try:
        journaled_before = journaled(own_homes)
        with ExitStack() as trimming:
            for target in gateways:
                trimming.enter_context(UsageTrimmer(target, wrk_pin))
            for _ in range(args.repeat):
                for target_name, nodes in targets.items():
                    on = f" on each of {len(nodes)}" if len(nodes) > 1 else ""
                    print(f"{name} / {target_name}: wrk -c{args.connections} -d{args.duration}{on} ...", flush=True)
                    runs[target_name].append(measure(nodes, scenario, args, wrk_pin, roots))
        for target in gateways:
            empty_streams(target)
        served = journaled(own_homes) - journaled_before
        cpu_paused = cpu_seconds(roots)
    finally:
        signal_all(workers, signal.SIGCONT)
    for target in gateways:
        if cooled := cooled_routes(target):
            sys.exit(f"{name}: a route cooled during the runs ({', '.join(cooled)}); its figures do not "
                     f"measure what the scenario says")
    wait_idle(roots)
    # The processes of this scenario's gateway nodes (named by their TOLLGATE_HOME, Bench.start):
    # the other nodes' workers, paused too, catch up meanwhile and are not this scenario's cost.
    own = {node.home.name for nodes in targets.values() for node in nodes if node.home}
    rows = []
    for target_name, results in runs.items():
        row = {"scenario": name, "target": target_name, **median_run(results), "runs": results}
        row["failed"] = any(r["failed"] for r in results)
        row["journaled_after"] = served if targets[target_name][0].redis_socket else 0
        row["cpu_us_per_request_after"] = {
            process: us for process, us in cpu_us_per_request(cpu_paused, cpu_seconds(roots), served).items()
            if process.split("/")[0] in own} if row["journaled_after"] else {}
        rows.append(row)
    if "bare" in runs and "gateway" in runs:
        rows[-1]["ratio"] = statistics.median(
            g["rps"] / b["rps"] for b, g in zip(runs["bare"], runs["gateway"]))
    return rows


def add_direct_ratios(results):
    """On a fallback scenario's gateway row: its req/s ÷ that of its direct scenario's gateway row
    of the same run (median runs), when both ran."""
    gateway_rps = {row["scenario"]: row["rps"] for row in results if row["target"] == "gateway"}
    for row in results:
        direct = SCENARIOS[row["scenario"]].direct
        if row["target"] == "gateway" and direct in gateway_rps:
            row["direct"], row["direct_ratio"] = direct, row["rps"] / gateway_rps[direct]


def median_run(results):
    """The figures of the run with the median req/s."""
    ranked = sorted(results, key=lambda r: r["rps"])
    middle = ranked[(len(ranked) - 1) // 2]
    return {k: v for k, v in middle.items() if k != "failed"}


def print_table(results):
    print(f"\n{'scenario':<18}{'target':<9}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'errors':>8}{'gw/bare':>9}")
    for row in results:
        ratio = f"{row['ratio']:.2f}x" if "ratio" in row else ""
        flag = "  <-- FAILED" if row["failed"] else ""
        print(f"{row['scenario']:<18}{row['target']:<9}{row['rps']:>10.0f}{row['p50_ms']:>9.2f}"
              f"{row['p99_ms']:>9.2f}{row['non_2xx'] + row['socket_errors']:>8}{ratio:>9}{flag}")
    pairs = [row for row in results if "ratio" in row]
    if pairs:
        print("\ngw/bare of each pair of runs (the table shows their median; req/s, p50 and p99 are"
              " the median run's):")
        for row in pairs:
            bare = next(r for r in results if r["scenario"] == row["scenario"] and r["target"] == "bare")
            ratios = " ".join(f"{g['rps'] / b['rps']:.2f}" for b, g in zip(bare["runs"], row["runs"]))
            print(f"  {row['scenario']}: {ratios}")
    split = [row for row in results if "rps_by_node" in row]
    if split:
        print("\nseveral nodes: req/s is the sum over the nodes, each loaded by its own wrk at once; p50"
              " and p99 the worst node's. By node (median run):")
        for row in split:
            print(f"  {row['scenario']} / {row['target']}: "
                  + " + ".join(f"{rps:.0f}" for rps in row["rps_by_node"]))
    fallbacks = [row for row in results if "direct_ratio" in row]
    if fallbacks:
        print("\nfallback/direct: gateway req/s ÷ the direct scenario's gateway req/s (median runs); µs: the"
              " server CPU the failed attempt adds per request:")
        for row in fallbacks:
            direct_rps = row["rps"] / row["direct_ratio"]
            print(f"  {row['scenario']} / {row['direct']}: {row['direct_ratio']:.2f}x, "
                  f"{1e6 / row['rps'] - 1e6 / direct_rps:+.1f} µs")
    print("\nCPU µs per request by process, of the 1e6 / req/s µs one core had per request"
          " (+N: µs per request the paused worker spent after the runs, replaying the usage journal):")
    for row in results:
        during, after = row["cpu_us_per_request"], row["cpu_us_per_request_after"]
        parts = ", ".join(f"{name} {during.get(name, 0):.1f}" + (f" +{after[name]:.1f}" if name in after else "")
                          for name in sorted(during.keys() | after.keys()))
        later = f" +{sum(after.values()):.1f} ({row['journaled_after']} requests)" if after else ""
        print(f"  {row['scenario']} / {row['target']}: {sum(during.values()):.1f}{later} of "
              f"{1e6 / row['rps']:.1f}: {parts}")
    print("\nRedis commands per request during the run (gateway's Redis; commands run inside"
          " scripts and the usage worker's count too):")
    for row in results:
        if row["redis_calls_per_request"]:
            calls = ", ".join(f"{name} {n:.2f}" for name, n in row["redis_calls_per_request"].items())
            print(f"  {row['scenario']} / {row['target']}: {calls}")


def print_end_to_end(results, drain_us):
    """gw/bare end to end: a request through the gateway costs its hot path's CPU (1e6 / req/s µs),
    its journal line's replay after the runs (the +N µs a request of every server process) and its
    usage record's drain into SQL (`drain_us`: measure_drain's µs a record, by database kind),
    against bare nginx's 1e6 / req/s µs; from the median runs (sets row["end_to_end_ratio"])."""
    rows = [row for row in results if "ratio" in row and row["cpu_us_per_request_after"]]
    if rows:
        print("\nend to end: bare µs a request ÷ (the gateway's hot path µs a request + its journal replay's"
              " + the drain's µs a record, measured on its own), median runs:")
    for row in rows:
        bare = 1e6 / next(r for r in results if r["scenario"] == row["scenario"] and r["target"] == "bare")["rps"]
        database = "postgresql" if SCENARIOS[row["scenario"]].nodes > 1 else "sqlite"
        hot, replay, drain = 1e6 / row["rps"], sum(row["cpu_us_per_request_after"].values()), drain_us[database]
        row["end_to_end_ratio"] = bare / (hot + replay + drain)
        print(f"  {row['scenario']}: {row['end_to_end_ratio']:.2f}x = {bare:.1f} / ({hot:.1f} + {replay:.1f} +"
              f" {drain:.1f} {database}) µs (gw/bare without them {row['ratio']:.2f}x)")


def postgres_database(stack, server_url):
    """A fresh database on the PostgreSQL server `server_url` for the two-node scenario (gateway
    nodes share a PostgreSQL database), dropped when the bench ends; None, and a note, when the
    server cannot be reached."""
    import sqlalchemy as sa  # the project's venv runs the gateway part

    name = f"tollgate_bench_{os.getpid()}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as err:
        print(f"openai-two-nodes skipped: no PostgreSQL at {server_url} (--postgres): {err.orig}",
              file=sys.stderr)
        return None

    def drop():
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    stack.callback(drop)
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)


def git_commit():
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          check=False, capture_output=True, text=True)
    return done.stdout.strip() or None


def run(args, workdir):
    server_pin, wrk_pin = cpu_pins()
    print(f"servers pinned: {' '.join(server_pin) or 'no'}; wrk pinned: {' '.join(wrk_pin) or 'no'}")
    results = []
    with ExitStack() as stack:
        bench = Bench(stack, workdir, server_pin)
        upstream_port = bench.fake_upstream()
        by_nodes = {}  # nodes -> {"bare": [targets], "gateway": [targets]}
        for nodes in sorted({SCENARIOS[name].nodes for name in args.scenarios}):
            by_nodes[nodes] = {"bare": [Target(f"http://127.0.0.1:{port}", UPSTREAM_KEY) for port in [
                bench.nginx(f"bare-proxy-{i + 1}" if nodes > 1 else "bare-proxy", "bare_proxy.conf",
                            UPSTREAM_PORT=upstream_port) for i in range(nodes)]]}
        if not args.only_baseline:
            if 1 in by_nodes:
                by_nodes[1]["gateway"] = [bench.gateway(upstream_port)]
            if 2 in by_nodes:
                database_url = postgres_database(stack, args.postgres)
                if database_url:
                    by_nodes[2]["gateway"] = bench.gateway_pair(upstream_port, database_url)
                else:
                    args.scenarios = [name for name in args.scenarios if SCENARIOS[name].nodes != 2]
        homes = [node.home for targets in by_nodes.values() for node in targets.get("gateway", [])]
        for name in args.scenarios:
            results += measure_scenario(name, by_nodes[SCENARIOS[name].nodes], args, wrk_pin, bench.roots, homes)
        drain_us = {}
        if not args.only_baseline:
            print(f"usage drain: {DRAIN_RECORDS:,} records, one worker (bench/drain.py) ...", flush=True)
            drain_us = measure_drain(args.postgres if 2 in by_nodes and by_nodes[2].get("gateway") else None)
    add_direct_ratios(results)
    print_table(results)
    print_end_to_end(results, drain_us)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git_commit(), "nginx": NGINX,
        "duration": args.duration, "connections": args.connections, "threads": 1,
        "repeat": args.repeat,
        "server_cpu": server_pin[-1:], "wrk_cpu": wrk_pin[-1:], "drain_us_per_record": drain_us,
        "results": results,
    }, indent=2) + "\n")
    print(f"\nwritten: {RESULTS.relative_to(REPO)}")
    if any(row["failed"] for row in results):
        sys.exit(f"FAILED: more than {MAX_ERROR_RATE:.1%} of requests failed in a run (see above); "
                 f"logs under {workdir} (gateway: {workdir}/gateway/log)")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="10s", help="wrk duration per run (default 10s)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="recorded runs per target and scenario, taking turns; medians are shown (default 3)")
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS,
                        help=f"comma-separated, of {', '.join(SCENARIOS)} (default {DEFAULT_SCENARIOS})")
    parser.add_argument("--only-baseline", action="store_true", help="skip the gateway")
    parser.add_argument("--postgres", default=os.environ.get("TOLLGATE_BENCH_POSTGRES_URL", POSTGRES_URL),
                        help="PostgreSQL server the two-node scenario makes its database on (default "
                             "$TOLLGATE_BENCH_POSTGRES_URL, else the local server)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (configs, logs)")
    args = parser.parse_args()
    args.scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    return args


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind and stop everything
    workdir = Path(tempfile.mkdtemp(prefix="tollgate-bench-"))
    workdir.chmod(0o755)  # nginx workers may run as another user when started as root
    finished = False
    try:
        run(args, workdir)
        finished = True
    except KeyboardInterrupt:
        sys.exit("interrupted; everything started was stopped")
    finally:
        if finished and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work dir kept (configs, logs): {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
