"""Every TOLLGATE_* environment variable, read in one place through typed parsers.

A bad value stops the process at start-up with a message naming the variable.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .money import usd_to_nano

REPO_ROOT = Path(__file__).resolve().parent.parent
LEASE_DICT_MIN_BYTES = 12 * 1024  # nginx cannot make a shared dict smaller (its slab pool)
MAX_BODY_BYTES = 64 * 1024 * 1024  # below money.MAX_TOKENS: each body byte is a token of a hold
# The canonical USDT contract (and decimals) of each deposit chain: the defaults of
# TOLLGATE_TRON_USDT_CONTRACT and TOLLGATE_<BSC|POLYGON>_USDT_CONTRACT / _DECIMALS.
# EVM contracts compare case-insensitively; TRON base58 exactly.
CANONICAL_USDT = {
    "tron": ("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", 6),
    "bsc": ("0x55d398326f99059fF775485246999027B3197955", 18),
    "polygon": ("0xc2132D05D31c914a87C6611C10748AEb04B58e8F", 6),
}
TRONGRID_URL = "https://api.trongrid.io"


class SettingsError(ValueError):
    pass


def _raw(env, name, default):
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _int(env, name, default, minimum=None, maximum=None):
    raw = _raw(env, name, None)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}")
    return value


def _bool(env, name, default):
    raw = _raw(env, name, None)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def _usd(env, name, default):
    raw = _raw(env, name, default)
    try:
        return usd_to_nano(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def _size(env, name, default, maximum=None, minimum=None):
    """nginx-style size: 1048576, 512k, 32m."""
    raw = _raw(env, name, default).lower()
    factor = {"k": 1024, "m": 1024 * 1024}.get(raw[-1:], 1)
    digits = raw[:-1] if factor != 1 else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 12:
        raise SettingsError(f"{name} must be a size such as 32m or 512k, got {raw!r}")
    value = int(digits) * factor
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum // (1024 * 1024)}m, got {raw!r}")
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum // 1024}k, got {raw!r}")
    return value


def _bonus_tiers(env, name, default):
    """'10:0,50:2,100:5': from a top-up of at least <USD>, a bonus of <percent> % (ascending USD)."""
    raw = _raw(env, name, default)
    tiers = []
    for part in raw.split(","):
        threshold, sep, percent = part.strip().partition(":")
        try:
            if not sep:
                raise ValueError
            threshold_nano = usd_to_nano(threshold.strip())
            bonus = Decimal(percent.strip())
        except (ValueError, InvalidOperation):
            raise SettingsError(f"{name} must look like 10:0,50:2,100:5 (USD:percent), got {raw!r}") from None
        if threshold_nano < 0 or not bonus.is_finite() or not 0 <= bonus <= 100:
            raise SettingsError(f"{name}: thresholds must be >= 0 and percents within 0..100, got {part.strip()!r}")
        tiers.append((threshold_nano, bonus))
    if [t for t, _b in tiers] != sorted({t for t, _b in tiers}):
        raise SettingsError(f"{name}: thresholds must be distinct and ascending, got {raw!r}")
    return tuple(tiers)


def _url(env, name, default):
    raw = _raw(env, name, default).rstrip("/")
    if not raw.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw


def _choice(env, name, default, choices):
    raw = _raw(env, name, default).strip().lower()
    if raw not in choices:
        raise SettingsError(f"{name} must be {' or '.join(choices)}, got {raw!r}")
    return raw


def _smtp_url(env, name):
    """smtp://[user:pass@]host[:port][?starttls=1] or smtps://…; None when unset."""
    raw = _raw(env, name, None)
    if raw is None:
        return None
    parsed = urlsplit(raw)
    try:
        parsed.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme not in ("smtp", "smtps") or not parsed.hostname:
        raise SettingsError(f"{name} must look like smtp://[user:pass@]host:port[?starttls=1] or smtps://…")
    return raw


def _tron_address(env, name, default):
    """A base58 TRON address (T…, 34 characters); its checksum is checked where it is used."""
    raw = _raw(env, name, default)
    if not (raw.startswith("T") and len(raw) == 34 and raw.isalnum()):
        raise SettingsError(f"{name} must be a base58 TRON address (T…), got {raw!r}")
    return raw


def _address(env, name):
    """host:port (an IPv6 host in brackets) or None when unset."""
    raw = _raw(env, name, None)
    if raw is None:
        return None
    host, _sep, port = raw.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c in host for c in " /;{}"):
        raise SettingsError(f"{name} must be host:port (such as 10.0.0.5:8000), got {raw!r}")
    return raw


def _addresses(env, name):
    """A comma-separated list of host:port, as a tuple (empty when unset)."""
    raw = _raw(env, name, None)
    if raw is None:
        return ()
    parts = tuple(part.strip() for part in raw.split(",") if part.strip())
    for part in parts:
        _address({name: part}, name)
    return parts


def _percent(env, name, default):
    """A percent within 0..100 with at most 4 decimals, as a Decimal."""
    raw = _raw(env, name, default)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or not 0 <= value <= 100 or value != round(value, 4):
        raise SettingsError(f"{name} must be a percent within 0..100 (at most 4 decimals), got {raw!r}")
    return value


_COUNTRY = re.compile(r"[A-Z]{2}")


def _tax_rules(env, name, default):
    """'DE:19,SG:9,*:0': the tax rate (percent) of customers in each country (ISO 3166-1 alpha-2),
    '*' for every other; ((country, percent), …) with '*' last."""
    raw = _raw(env, name, default)
    rules = {}
    for part in raw.split(","):
        country, sep, percent = part.strip().partition(":")
        country = country.strip().upper()
        if not sep or not (country == "*" or _COUNTRY.fullmatch(country)) or country in rules:
            raise SettingsError(f"{name} must look like DE:19,SG:9,*:0 (country:percent, each country "
                                f"once), got {raw!r}")
        rules[country] = _percent({name: percent}, name, None)
    rules.setdefault("*", Decimal(0))
    return tuple(sorted(rules.items(), key=lambda rule: rule[0] == "*"))


def _countries(env, name):
    """'AT,BE,…' or '*' (every country) or unset (none): a frozenset of codes, or {'*'}."""
    raw = _raw(env, name, "")
    codes = {code.strip().upper() for code in raw.split(",") if code.strip()}
    if any(code != "*" and not _COUNTRY.fullmatch(code) for code in codes):
        raise SettingsError(f"{name} must be country codes such as AT,BE,NL (or *), got {raw!r}")
    return frozenset(codes)


def _series(env, name, default):
    """An invoice number prefix; {year} becomes the issue year: 'TG-{year}-' -> 'TG-2026-'."""
    raw = _raw(env, name, default)
    bare = raw.replace("{year}", "")
    if "{" in bare or "}" in bare or len(raw) > 40 or not re.fullmatch(r"[A-Za-z0-9/._-]*", bare):
        raise SettingsError(f"{name} must be at most 40 letters, digits and -/._ with an optional {{year}}, "
                            f"got {raw!r}")
    return raw


def time_zone(name: str) -> ZoneInfo | None:
    """The IANA time zone of that name, or None when there is none such (also for paths)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*", name) or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True)
class InvoiceIssuer:
    """The operator as its invoices name it (TOLLGATE_INVOICE_ISSUER, a JSON file, and
    TOLLGATE_INVOICE_ISSUER_<FIELD> variables, which win)."""

    name: str
    address: str
    country: str
    tax_id: str
    email: str


ISSUER_FIELDS = ("name", "address", "country", "tax_id", "email")


def _issuer(env) -> InvoiceIssuer:
    values = dict.fromkeys(ISSUER_FIELDS, "")
    path = _raw(env, "TOLLGATE_INVOICE_ISSUER", None)
    if path is not None:
        try:
            loaded = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SettingsError(f"TOLLGATE_INVOICE_ISSUER: cannot read {path} as JSON: {exc}") from None
        if not isinstance(loaded, dict) or set(loaded) - set(ISSUER_FIELDS) or not all(
                isinstance(value, str) for value in loaded.values()):
            raise SettingsError(f"TOLLGATE_INVOICE_ISSUER: {path} must be a JSON object of text fields among "
                                f"{', '.join(ISSUER_FIELDS)}")
        values.update(loaded)
    for key in ISSUER_FIELDS:
        raw = env.get(f"TOLLGATE_INVOICE_ISSUER_{key.upper()}")
        if raw is not None and raw.strip():
            values[key] = raw.strip().replace("\\n", "\n")
    values = {key: value.strip() for key, value in values.items()}
    values["country"] = values["country"].upper()
    if values["country"] and not _COUNTRY.fullmatch(values["country"]):
        raise SettingsError(f"the invoice issuer's country must be a two-letter code, got {values['country']!r}")
    values["name"] = values["name"] or "Tollgate"
    return InvoiceIssuer(**values)


# EVM deposit chains (deposits/evm_watcher.py), TOLLGATE_<CHAIN>_… for bsc and polygon.
EVM_CONFIRMATIONS = {"bsc": 15, "polygon": 40}


@dataclass(frozen=True)
class EvmChainSettings:
    chain: str
    rpc_url: str | None = field(repr=False)  # None: not watched; may carry an API key, so never printed
    usdt_contract: str  # the one accepted USDT contract (0x…); the canonical one by default
    usdt_decimals: int  # checked against the contract's decimals() when a watcher starts
    confirmations: int  # blocks on top of a deposit's block, where the node has no `finalized` tag
    log_range: int  # most blocks per eth_getLogs call
    start_block: int | None  # where the first scan starts; None: the chain's confirmed head then


def _evm_address(env, name, default):
    raw = _raw(env, name, default)
    digits = raw[2:] if raw[:2].lower() == "0x" else ""
    if len(digits) != 40 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise SettingsError(f"{name} must be a contract address (0x and 40 hex digits), got {raw!r}")
    return raw


def _evm_chains(env) -> tuple[EvmChainSettings, ...]:
    chains = []
    for chain, confirmations in EVM_CONFIRMATIONS.items():
        contract, decimals = CANONICAL_USDT[chain]
        prefix = f"TOLLGATE_{chain.upper()}_"
        chains.append(EvmChainSettings(
            chain=chain,
            rpc_url=_raw(env, prefix + "RPC_URL", None),
            usdt_contract=_evm_address(env, prefix + "USDT_CONTRACT", contract),
            usdt_decimals=_int(env, prefix + "USDT_DECIMALS", decimals, 0, 36),
            confirmations=_int(env, prefix + "CONFIRMATIONS", confirmations, 1, 100_000),
            log_range=_int(env, prefix + "LOG_RANGE", 1000, 1, 1_000_000),
            start_block=_int(env, prefix + "START_BLOCK", None, 0),
        ))
    return tuple(chains)


@dataclass(frozen=True)
class Settings:
    home: Path
    port: int
    listen: str
    database_url: str
    redis_url: str
    manage_redis: bool
    redis_shards: int
    # Seed nodes of a Redis Cluster ("host:port"); empty: the one Redis at redis_url.
    redis_cluster: tuple[str, ...]
    # The CA certificates a Redis reached by TLS (rediss://) is verified against; None: the
    # system's (SYSTEM_CA_FILE).
    redis_ca_file: Path | None
    secret_key_file: Path
    secret_key: str | None
    nginx_workers: str
    gunicorn_workers: int
    # Nodes (ops/supervisor.py roles): where a control node's gunicorn listens (None: a Unix
    # socket in run/), and where a gateway node finds the control plane (None: this machine's).
    control_listen: str | None
    control_plane: str | None
    # Who may read /metrics besides loopback: the bearer of this token (repr=False: never printed).
    metrics_token: str | None = field(repr=False)
    max_body_bytes: int
    lease_chunk_nano: int
    lease_idle_seconds: int
    lease_ttl_seconds: int
    lease_dict_bytes: int
    upstream_connect_timeout: int
    upstream_read_timeout: int
    # Routing (lua/tollgate/route.lua, health.lua): attempts per request, and when a route cools.
    max_attempts: int
    route_fails: int
    route_fail_window_seconds: int
    route_cooldown_seconds: int
    drain_limit_bytes: int
    demo: bool
    log_level: str
    # Top-ups (control_plane/deposits): minimum deposit, volume-bonus tiers, watch-only xpubs, card webhook.
    min_deposit_nano: int
    topup_bonus_tiers: tuple[tuple[int, Decimal], ...]
    xpub_evm: str | None
    xpub_tron: str | None
    payment_webhook_secret: str | None
    payment_checkout_url: str | None
    # TRON watcher (deposits/tron_watcher.py): one URL serving the full-node API and TronGrid's /v1 API;
    # the TronGrid key goes only into the TRON-PRO-API-KEY header (repr=False: never printed).
    tron_url: str
    tron_api_key: str | None = field(repr=False)
    tron_usdt_contract: str
    tron_start_block: int | None  # None: the solidified head at the first scan
    tron_page_size: int
    tron_poll_seconds: int  # TRON scans cost TronGrid requests (a quota); solidity takes ~1 min
    evm_chains: tuple[EvmChainSettings, ...]
    chain_poll_seconds: int  # how often `tollgate chain watch` scans each watched chain
    # The console (control_plane/console): who may sign up, and the mail its links go out in.
    signup_open: bool
    smtp_url: str | None = field(repr=False)  # may carry a password, so never printed; None: the outbox
    mail_from: str
    public_url: str | None  # the base of links in mails; None: base_url
    # The admin console (control_plane/admin): how long an admin session lasts idle.
    admin_session_minutes: int
    # Price sync (catalog/price_sync.py): a rise above this is held for approval; `tollgate up`
    # syncs from the source (a URL or file, in the format given) every so many hours when it is set.
    price_sync_max_rise_percent: int
    price_sync_source: str | None
    price_sync_format: str
    price_sync_hours: int
    # Invoices and statements (control_plane/billing): the operator, its tax rules, the series.
    invoice_issuer: InvoiceIssuer
    tax_rules: tuple[tuple[str, Decimal], ...]  # (country or '*', percent), '*' last
    reverse_charge_countries: frozenset[str]  # a customer here with a tax id pays no tax: the note
    reverse_charge_note: str
    invoice_series: str  # prefixes with an optional {year}
    credit_note_series: str
    # Credit policies: unused top-up credit expires after so many days (None: never); the platform
    # fee on card top-ups (percent on top of the credit); how long a card top-up is refundable.
    credit_expiry_days: int | None
    topup_fee_percent: Decimal
    refund_window_hours: int | None  # None: a card top-up stays refundable

    @property
    def console_base_url(self) -> str:
        """Where customers reach this instance: TOLLGATE_PUBLIC_URL, else the local gateway URL."""
        return self.public_url or self.base_url

    @property
    def outbox_dir(self) -> Path:
        return self.home / "outbox"

    def evm_chain(self, chain: str) -> EvmChainSettings:
        for settings in self.evm_chains:
            if settings.chain == chain:
                return settings
        raise SettingsError(f"{chain!r} is not an EVM deposit chain")

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def nginx_dir(self) -> Path:
        return self.home / "nginx"

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"

    @property
    def journal_dir(self) -> Path:
        return self.home / "journal"

    @property
    def redis_socket(self) -> Path:
        return self.run_dir / "redis.sock"

    @property
    def gunicorn_socket(self) -> Path:
        return self.run_dir / "gunicorn.sock"

    @property
    def gunicorn_bind(self) -> str:
        """gunicorn's --bind: TOLLGATE_CONTROL_LISTEN, else the Unix socket."""
        return self.control_listen or f"unix:{self.gunicorn_socket}"

    @property
    def control_plane_upstream(self) -> str:
        """The `server` nginx passes /api/, /console/ and /admin/ to."""
        return self.control_plane or self.control_listen or f"unix:{self.gunicorn_socket}"

    @property
    def redis_tls(self) -> bool:
        """Whether Redis (each node of a cluster too) is reached by TLS: a rediss:// URL."""
        return self.redis_url.startswith("rediss://")

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.listen in ("0.0.0.0", "*", "") else self.listen
        return f"http://{host}:{self.port}"


def _existing_file(env, name: str) -> Path | None:
    value = _raw(env, name, None)
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise SettingsError(f"{name} must name a readable file, got {value!r}")
    return path


def load(env=None) -> Settings:
    env = os.environ if env is None else env
    home = Path(_raw(env, "TOLLGATE_HOME", "./var")).expanduser().resolve()
    redis_url = _raw(env, "TOLLGATE_REDIS_URL", None)
    redis_cluster = _addresses(env, "TOLLGATE_REDIS_CLUSTER")
    manage_redis = redis_url is None and not redis_cluster
    if redis_url is None:
        redis_url = f"unix://{home / 'run' / 'redis.sock'}"
    database_url = _raw(env, "TOLLGATE_DATABASE_URL", f"sqlite:///{home / 'tollgate.db'}")
    log_level = _raw(env, "TOLLGATE_LOG_LEVEL", "info").lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise SettingsError(f"TOLLGATE_LOG_LEVEL must be debug, info, warning or error, got {log_level!r}")
    return Settings(
        home=home,
        port=_int(env, "TOLLGATE_PORT", 8080, 1, 65535),
        listen=_raw(env, "TOLLGATE_LISTEN", "127.0.0.1"),
        database_url=database_url,
        redis_url=redis_url,
        manage_redis=manage_redis,
        redis_shards=_int(env, "TOLLGATE_REDIS_SHARDS", 4, 1, 1024),
        redis_cluster=redis_cluster,
        redis_ca_file=_existing_file(env, "TOLLGATE_REDIS_CA"),
        secret_key_file=home / "secret.key",
        secret_key=_raw(env, "TOLLGATE_SECRET_KEY", None),
        nginx_workers=_raw(env, "TOLLGATE_NGINX_WORKERS", "auto"),
        gunicorn_workers=_int(env, "TOLLGATE_GUNICORN_WORKERS", 2, 1, 64),
        control_listen=_address(env, "TOLLGATE_CONTROL_LISTEN"),
        control_plane=_address(env, "TOLLGATE_CONTROL_PLANE"),
        metrics_token=_raw(env, "TOLLGATE_METRICS_TOKEN", None),
        # Every body byte counts as a token in a request's hold (at most MAX_TOKENS).
        max_body_bytes=_size(env, "TOLLGATE_MAX_BODY", "32m", MAX_BODY_BYTES),
        lease_chunk_nano=_usd(env, "TOLLGATE_LEASE_CHUNK_USD", "1"),
        lease_idle_seconds=_int(env, "TOLLGATE_LEASE_IDLE_SECONDS", 2, 1, 3600),
        lease_ttl_seconds=_int(env, "TOLLGATE_LEASE_TTL_SECONDS", 120, 10, 86400),
        # nginx's shared dict of the local leases (lua/tollgate/lease.lua); full, it answers 503.
        lease_dict_bytes=_size(env, "TOLLGATE_LEASE_DICT", "16m", minimum=LEASE_DICT_MIN_BYTES),
        upstream_connect_timeout=_int(env, "TOLLGATE_UPSTREAM_CONNECT_TIMEOUT", 10, 1, 600),
        upstream_read_timeout=_int(env, "TOLLGATE_UPSTREAM_READ_TIMEOUT", 600, 1, 86400),
        drain_limit_bytes=_size(env, "TOLLGATE_DRAIN_LIMIT", "8m"),
        max_attempts=_int(env, "TOLLGATE_MAX_ATTEMPTS", 3, 1, 5),
        route_fails=_int(env, "TOLLGATE_ROUTE_FAILS", 3, 1, 1_000_000_000),
        route_fail_window_seconds=_int(env, "TOLLGATE_ROUTE_FAIL_WINDOW_SECONDS", 10, 1, 3600),
        route_cooldown_seconds=_int(env, "TOLLGATE_ROUTE_COOLDOWN_SECONDS", 30, 1, 3600),
        demo=_bool(env, "TOLLGATE_DEMO", True),
        log_level=log_level,
        min_deposit_nano=_usd(env, "TOLLGATE_MIN_DEPOSIT_USD", "10"),
        topup_bonus_tiers=_bonus_tiers(env, "TOLLGATE_TOPUP_BONUS_TIERS", "10:0,50:2,100:5"),
        xpub_evm=_raw(env, "TOLLGATE_XPUB_EVM", None),
        xpub_tron=_raw(env, "TOLLGATE_XPUB_TRON", None),
        payment_webhook_secret=_raw(env, "TOLLGATE_PAYMENT_WEBHOOK_SECRET", None),
        payment_checkout_url=_raw(env, "TOLLGATE_PAYMENT_CHECKOUT_URL", None),
        tron_url=_url(env, "TOLLGATE_TRON_URL", TRONGRID_URL),
        tron_api_key=_raw(env, "TOLLGATE_TRON_API_KEY", None),
        tron_usdt_contract=_tron_address(env, "TOLLGATE_TRON_USDT_CONTRACT", CANONICAL_USDT["tron"][0]),
        tron_start_block=_int(env, "TOLLGATE_TRON_START_BLOCK", None, 0),
        tron_page_size=_int(env, "TOLLGATE_TRON_PAGE_SIZE", 200, 1, 200),
        tron_poll_seconds=_int(env, "TOLLGATE_TRON_POLL_SECONDS", 30, 1, 3600),
        evm_chains=_evm_chains(env),
        chain_poll_seconds=_int(env, "TOLLGATE_CHAIN_POLL_SECONDS", 2, 1, 3600),
        signup_open=_choice(env, "TOLLGATE_SIGNUP", "open", ("open", "closed")) == "open",
        smtp_url=_smtp_url(env, "TOLLGATE_SMTP_URL"),
        mail_from=_raw(env, "TOLLGATE_MAIL_FROM", "Tollgate <tollgate@localhost>"),
        public_url=_raw(env, "TOLLGATE_PUBLIC_URL", None) and _url(env, "TOLLGATE_PUBLIC_URL", None),
        admin_session_minutes=_int(env, "TOLLGATE_ADMIN_SESSION_MINUTES", 60, 1, 24 * 60),
        price_sync_max_rise_percent=_int(env, "TOLLGATE_PRICE_SYNC_MAX_RISE_PERCENT", 50, 0, 1_000_000),
        price_sync_source=_raw(env, "TOLLGATE_PRICE_SYNC_SOURCE", None),
        price_sync_format=_choice(env, "TOLLGATE_PRICE_SYNC_FORMAT", "litellm", ("litellm", "openrouter")),
        price_sync_hours=_int(env, "TOLLGATE_PRICE_SYNC_HOURS", 24, 1, 24 * 365),
        invoice_issuer=_issuer(env),
        tax_rules=_tax_rules(env, "TOLLGATE_TAX_RULES", "*:0"),
        reverse_charge_countries=_countries(env, "TOLLGATE_TAX_REVERSE_CHARGE"),
        reverse_charge_note=_raw(env, "TOLLGATE_TAX_REVERSE_CHARGE_NOTE",
                                 "Reverse charge: the recipient accounts for the VAT."),
        invoice_series=_series(env, "TOLLGATE_INVOICE_SERIES", "TG-{year}-"),
        credit_note_series=_series(env, "TOLLGATE_CREDIT_NOTE_SERIES", "TG-CN-{year}-"),
        credit_expiry_days=_int(env, "TOLLGATE_CREDIT_EXPIRY_DAYS", None, 1, 36500),
        topup_fee_percent=_percent(env, "TOLLGATE_TOPUP_FEE_PERCENT", "0"),
        refund_window_hours=_int(env, "TOLLGATE_REFUND_WINDOW_HOURS", None, 1, 24 * 36500),
    )
