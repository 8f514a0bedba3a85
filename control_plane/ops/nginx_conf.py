"""Renders the gateway's nginx configuration and the hot path's settings into TOLLGATE_HOME."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

from ..settings import REPO_ROOT, Settings

DEBIAN_LUA_MODULES = (
    "/usr/lib/nginx/modules/ndk_http_module.so",
    "/usr/lib/nginx/modules/ngx_http_lua_module.so",
)
SETTLE_INTERVAL_SECONDS = 0.005
CONFIG_TTL_SECONDS = 1
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's bundle (ca-certificates)
TLS_VERIFY_DEPTH = 5  # intermediate certificates between a Redis's and its root


def nginx_binary() -> str:
    """OpenResty when installed (Lua built in), else Debian's nginx with the Lua module."""
    for name in ("openresty", "nginx"):
        path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
        if path:
            return path
    raise RuntimeError("nginx is not installed: run `make install` (or apt-get install nginx libnginx-mod-http-lua)")


def _load_modules(openresty: bool) -> str:
    if openresty:
        return ""
    return "\n".join(f"load_module {path};" for path in DEBIAN_LUA_MODULES if Path(path).exists())


def _resolver(resolv_conf: Path = Path("/etc/resolv.conf")) -> str:
    """A `resolver` directive with this machine's IPv4 name servers, so the hot path can reach
    Redis by a host name (a container's, say); empty when there are none."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return ""
    servers = [parts[1] for parts in (line.split() for line in lines)
               if len(parts) >= 2 and parts[0] == "nameserver" and parts[1].count(".") == 3]
    return f"resolver {' '.join(servers)} valid=30s ipv6=off;" if servers else ""


def redis_target(redis_url: str, cluster: tuple[str, ...] = ()) -> dict:
    """Where the hot path's Redis is: a socket, a host and port, or (cluster) the seed nodes
    lua/tollgate/redis.lua reads the slot map from; `tls` when it is reached by TLS (rediss://,
    each node of a cluster too), its certificate verified for the host connected to."""
    parts = urlsplit(redis_url)
    target = {"connect_timeout_ms": 500, "send_timeout_ms": 500, "read_timeout_ms": 700}
    if parts.scheme == "rediss":
        target["tls"] = True
    if cluster:
        target["cluster"] = list(cluster)
        if parts.password:
            target["password"] = parts.password
        return target
    if parts.scheme == "unix":
        target["socket"] = parts.path
    else:
        target["host"] = parts.hostname or "127.0.0.1"
        target["port"] = parts.port or 6379
    if parts.password:
        target["password"] = parts.password
    db = parts.path.strip("/") if parts.scheme != "unix" else ""
    target["db"] = int(db) if db.isdigit() else 0
    return target


def hot_path_settings(settings: Settings) -> dict:
    values = {
        "redis": redis_target(settings.redis_url, settings.redis_cluster),
        "errors_path": str(REPO_ROOT / "errors.json"),
        "node_name": socket.gethostname().split(".")[0] or "node",
        "lease_chunk_nano": settings.lease_chunk_nano,
        "lease_ttl_seconds": settings.lease_ttl_seconds,
        "lease_idle_seconds": settings.lease_idle_seconds,
        "settle_interval": SETTLE_INTERVAL_SECONDS,
        "config_ttl": CONFIG_TTL_SECONDS,
        "max_body_bytes": settings.max_body_bytes,
        "drain_limit_bytes": settings.drain_limit_bytes,
        "max_attempts": settings.max_attempts,
        "route_fails": settings.route_fails,
        "route_fail_window_seconds": settings.route_fail_window_seconds,
        "route_cooldown_seconds": settings.route_cooldown_seconds,
        "journal_dir": str(settings.journal_dir),
        "node_file": str(settings.run_dir / "nginx-node"),
    }
    if settings.metrics_token:
        # Only its SHA-256 is written down (lua/tollgate/metrics.lua compares a bearer's).
        values["metrics_token_sha256"] = hashlib.sha256(settings.metrics_token.encode()).hexdigest()
    return values


def _redis_tls(settings: Settings) -> str:
    """The certificates the hot path verifies a Redis reached by TLS against."""
    if not settings.redis_tls:
        return ""
    return (f"lua_ssl_trusted_certificate {settings.redis_ca_file or SYSTEM_CA_FILE};\n"
            f"    lua_ssl_verify_depth {TLS_VERIFY_DEPTH};")


def _user_directive() -> str:
    """Workers run as the user that runs `tollgate up` (nginx would drop root to nobody, who
    cannot reach the state directory)."""
    if os.geteuid() != 0:
        return ""
    return "user root;"


def _fill(template: str, values: dict) -> str:
    for name, value in values.items():
        template = template.replace("{{" + name + "}}", str(value))
    if "{{" in template:
        start = template.index("{{")
        raise ValueError(f"unfilled placeholder {template[start:template.index('}}', start) + 2]}")
    return template


def render(settings: Settings, openresty: bool | None = None) -> Path:
    """Writes nginx.conf, proxy/*.conf and tollgate.json; returns the nginx.conf path. For
    OpenResty (Lua built in: no modules to load) or Debian's nginx; None: whichever is installed."""
    conf_dir = settings.nginx_dir
    for directory in (conf_dir / "proxy", conf_dir / "tmp", settings.log_dir, settings.run_dir, settings.journal_dir):
        directory.mkdir(parents=True, exist_ok=True)
    if openresty is None:
        openresty = Path(nginx_binary()).name == "openresty"
    values = {
        "load_modules": _load_modules(openresty),
        "user": _user_directive(),
        "workers": settings.nginx_workers,
        "home": settings.home,
        "repo": REPO_ROOT,
        "conf_dir": conf_dir,
        "listen": settings.listen,
        "port": settings.port,
        "max_body": settings.max_body_bytes,
        "lease_dict": settings.lease_dict_bytes,
        "connect_timeout": settings.upstream_connect_timeout,
        "read_timeout": settings.upstream_read_timeout,
        "control_plane": settings.control_plane_upstream,
        "resolver": _resolver(),
        "redis_tls": _redis_tls(settings),
    }
    for source in sorted((REPO_ROOT / "proxy").glob("*.conf")):
        (conf_dir / "proxy" / source.name).write_text(_fill(source.read_text(), values))
    (conf_dir / "tollgate.json").write_text(json.dumps(hot_path_settings(settings), indent=2))
    target = conf_dir / "nginx.conf"
    target.write_text(_fill((REPO_ROOT / "nginx.conf").read_text(), values))
    return target
