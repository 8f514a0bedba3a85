"""Plain helpers the test modules share (their fixtures are in conftest.py, gateway_fixtures.py and
evm_fixtures.py): balances as SQL and Redis hold them, usage records packed as the hot path packs
them, and requests to a running instance (harness.Gateway) with what it billed for them."""
from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_plane import db
from control_plane.accounts import api_keys
from control_plane.billing import ledger
from control_plane.hot import redis_keys
from control_plane.hot.usage_records import RECORD_FIELDS
from control_plane.models import Account, ApiKey, Usage

# -- tools from the npm registry ------------------------------------------------------------------

def npm_binary(directory: Path, path: str) -> Path:
    """The command at `path` under node_modules of the npm packages locked in `directory`
    (tests/evm, tests/claude_code), installed by `npm ci` on first use. --ignore-scripts: the
    binaries come in their platform packages from the npm registry itself."""
    binary = directory / "node_modules" / path
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(f"{path} is installed from the npm registry: these tests need node and npm")
        subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=directory, check=True,
                       stdout=subprocess.DEVNULL)
    return binary


# -- balances --------------------------------------------------------------------------------------

def sql_balance(settings, account_id: int) -> int:
    """The account's balance in SQL: the sum of its ledger entries (the cached balance_nano is
    asserted equal to it)."""
    with db.session_scope(settings) as session:
        balance = ledger.account_balance(session, account_id)
        assert session.get(Account, account_id).balance_nano == balance
        return balance


def redis_balance(settings, redis_client, account_id: int) -> int:
    """The account's `bal` in Redis; 0 when Redis has none."""
    shard = redis_keys.shard_of(account_id, settings.redis_shards)
    return int(redis_client.hget(redis_keys.account(shard, account_id), "bal") or 0)


# -- usage records (docs/internals.md "Usage record") ------------------------------------------------

# The token counts of usage_record, and its charge at conftest's price_version (nano-USD per 1M:
# input 150e6, cached 75e6, output and reasoning 600e6):
# (1000 × 150e6 + 200 × 75e6 + 500 × 600e6 + 100 × 600e6) / 1e6 = 525,000.
TOKENS = {"in": "1000", "cr": "200", "cw": "0", "cw1h": "0", "out": "500", "rsn": "100"}
COST = 525_000
HOLD = 600_000


def usage_record(customer, price_version, rid: str, **overrides: str) -> dict[str, str]:
    """A usage record's values by name: a provider-billed stream of the customer's key at the
    price version (None: the record names none; else conftest's at-cost model, so also its route
    and cost version, the provider's cost COST), TOKENS for COST within HOLD, served at the
    first attempt, without error; `overrides` replace values."""
    version = "" if price_version is None else str(price_version.id)
    route = "0" if price_version is None else str(price_version.route_id or 0)
    return {
        "rid": rid, "ts": "1700000000123", "acct": str(customer.account.id), "key": str(customer.key.id),
        "model": "test-chat", "umodel": "test-chat-upstream", "provider": "test",
        "pv": version, "ep": "chat.completions", "stream": "1",
        "status": "200", "basis": "provider", **TOKENS, "cost": str(COST), "ms": "850", "ttfb": "120",
        "node": "node-a", "hold": str(HOLD), "over": "0", "asked": "test-chat", "route": route,
        "cv": version or "0", "pcost": str(COST) if version else "0", "tries": "1", "failed": "",
        "ecode": "", "emsg": "", **overrides,
    }


def packed_record(values: dict[str, str]) -> str:
    """A record as the hot path packs it (lua/tollgate/record.lua FIELDS): its values in
    RECORD_FIELDS order, tab-separated."""
    return "\t".join(values[name] for name in RECORD_FIELDS)


def usage_entry(*records: dict[str, str] | str) -> dict[str, str]:
    """A usage stream entry as the settle script appends one: its one field `r` holds a batch's
    records, one a line. Each record is given by its values (packed here) or as a line already
    packed, well-formed or not."""
    return {"r": "\n".join(record if isinstance(record, str) else packed_record(record) for record in records)}


def reconcile_report(cli) -> tuple[int, dict]:
    """`tollgate reconcile --json` (conftest's cli): its exit code and report."""
    result = cli("reconcile", "--json")
    return result.exit_code, json.loads(result.stdout)


def drain_all(drain) -> int:
    """Records everything in the usage streams with the UsageDrain; how many records it wrote."""
    written = 0
    while entries := drain.read(block_ms=1):
        written += drain.record(entries)
    return written


# -- a running instance (harness.Gateway) -------------------------------------------------------------

CACHE_SECONDS = 1.5  # the gateway caches models and providers for up to 1 s
UPSTREAM_KEY = "upstream-secret"  # the API key of the providers the tests add at a simulator


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ANTHROPIC_VERSION = "2023-06-01"


def anthropic_headers(key: str) -> dict[str, str]:
    """The key and the API version, as Anthropic's clients send them."""
    return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}


def headers_for(protocol: str, key: str) -> dict[str, str]:
    """A JSON request's headers with the key, as clients of the protocol send them."""
    credentials = anthropic_headers(key) if protocol == "anthropic" else bearer(key)
    return {**credentials, "Content-Type": "application/json"}


def tg(gateway, *args: str) -> str:
    """`tollgate args…` against the instance; its output."""
    return gateway.cli(*args).stdout


def new_customer(gateway, usd: str = "10", *key_args: str, limit_usd: str | None = None,
                 admin: bool = False) -> tuple[str, str]:
    """A fresh account credited `usd` (an admin account, which sees each usage row's overage,
    when `admin`) and a key (`tollgate key create` options `key_args`, spend limit `limit_usd`):
    (email, key)."""
    email = f"c{uuid.uuid4().hex[:12]}@example.com"
    return email, gateway.create_customer(email, usd, limit_usd, *key_args, admin=admin)


def api_get(gateway, key: str, path: str):
    """The JSON answer of a GET with the key (an HTTPError for an error status)."""
    req = urllib.request.Request(f"{gateway.url}{path}", headers=bearer(key))
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.loads(r.read())


def balance_nano(gateway, key: str) -> int:
    """The live balance, as the customer API reports it."""
    return api_get(gateway, key, "/api/v1/balance")["balance_nano"]


def request_json(gateway, method: str, path: str, headers: dict | None = None, body: bytes | dict | None = None,
                 timeout: float = 30):
    """(status, headers, decoded JSON body) of one request; a dict body is sent as JSON."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{gateway.url}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def post_json(gateway, path: str, body: bytes | dict, headers: dict | None = None):
    """(status, headers, decoded JSON body) of a POST."""
    return request_json(gateway, "POST", path, headers, body)


def post_raw(gateway, path: str, body: bytes | dict, headers: dict, timeout: float = 30):
    """(status, headers, body bytes) of a POST over plain http.client; a cut answer gives what
    arrived. A dict body is sent as JSON."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=timeout)
    try:
        conn.request("POST", path, body=data, headers=headers)
        resp = conn.getresponse()
        try:
            answer = resp.read()
        except http.client.IncompleteRead as e:
            answer = e.partial
        return resp.status, resp.headers, answer
    finally:
        conn.close()


# The sandbox's answers (lua/tollgate/sandbox.lua) are a function of the request body as it reaches
# it (the gateway adds `"stream_options":{"include_usage":true},`, 40 bytes, to an OpenAI chat or
# completions stream that did not ask for its usage): ⌈body bytes / 4⌉ prompt tokens, from 128 of
# them ⌊prompt / 128⌋ × 64 cached; 16 reasoning tokens for a model named *reason*; its 24-word
# sentence (a token a word) within max_tokens, or a tool call's arguments or a JSON answer of
# ⌈JSON bytes / 4⌉ tokens. An Anthropic prompt naming cache_control writes ⌊prompt / 2⌋ of it to
# the cache (the 1-hour tier with "ttl": "1h"), the rest less the cached part is uncached input.
# Its models' prices (control_plane/ops/demo.py), in nano-USD a token: sandbox-chat 150 input, 75
# cached, 600 output; sandbox-reasoner 1,100 input, 550 cached, 4,400 output and reasoning;
# sandbox-claude 3,000 input, 300 cache read, 3,750 cache write, 6,000 1-hour cache write,
# 15,000 output; sandbox-embed 20 input.
LONG_PROMPT = "Summarise the ledger rules. " * 40  # 1,120 characters: long enough for a cache hit
MESSAGES = [{"role": "user", "content": LONG_PROMPT}]
CACHED_SYSTEM = [{"type": "text", "text": LONG_PROMPT, "cache_control": {"type": "ephemeral"}}]


def exchange(gateway, raw: bytes):
    """Sends exactly `raw` on a new connection: (status, lower-cased headers, body bytes)."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(raw)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def sized(template: str, length: int) -> bytes:
    """The template with its `{pad}` filled with x's so that the body is exactly `length` bytes."""
    body = template.replace("{pad}", "x" * (length - len(template) + len("{pad}"))).encode()
    assert len(body) == length
    return body


# -- what it billed --------------------------------------------------------------------------------------

def tokens_of(row: dict) -> dict[str, int]:
    """A usage row's token counts by record field (in, cr, cw, cw1h, out, rsn)."""
    t = row["tokens"]
    return {"in": t["input"], "cr": t["cached_input"], "cw": t["cache_write"],
            "cw1h": t["cache_write_1h"], "out": t["output"], "rsn": t["reasoning"]}


def rows_of(gateway, key: str, count: int, timeout: float = 20) -> list[dict]:
    """The key's usage rows once there are `count` of them in SQL (newest first)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = gateway.usage_rows(key)
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, rows
            return rows
        time.sleep(0.05)


def usage_in_sql(gateway, key: str, count: int, timeout: float = 20) -> list[Usage]:
    """The key's usage rows as SQL holds them (every column, error_code and error_message too),
    oldest first, once there are `count` of them."""
    engine = db.engine_for(gateway.database_url)
    query = (select(Usage).join(ApiKey, ApiKey.id == Usage.key_id)
             .where(ApiKey.key_hash == api_keys.hash_key(key)).order_by(Usage.id))
    deadline = time.monotonic() + timeout
    while True:
        with Session(engine, expire_on_commit=False) as session:
            rows = list(session.scalars(query))
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, [(row.status, row.error_code) for row in rows]
            return rows
        time.sleep(0.05)


def key_hot_state(gateway, key: str) -> dict[str, str]:
    """The key's hash in Redis (`limit`, `spent`, `held`): what the hot path admits it against."""
    from console_client import settings_of

    with Session(db.engine_for(gateway.database_url)) as session:
        row = session.scalar(select(ApiKey).where(ApiKey.key_hash == api_keys.hash_key(key)))
        account_id, key_id = row.account_id, row.id
    shard = redis_keys.shard_of(account_id, settings_of(gateway).redis_shards)
    return gateway.redis().hgetall(redis_keys.key_state(shard, key_id))


def only_row(gateway, key: str, timeout: float = 20) -> dict:
    """The key's one usage row, once the worker moved it into SQL."""
    return rows_of(gateway, key, 1, timeout)[0]


def assert_billed(gateway, key: str, before: int, tokens: dict[str, int], cost: int, stream: bool) -> None:
    """The key's one usage row has the provider's token counts `tokens` and is charged `cost`,
    and the live balance is `before` less that."""
    row = only_row(gateway, key)
    assert (tokens_of(row), row["cost_nano"], row["billing_basis"], row["stream"]) == (
        tokens, cost, "provider", stream), row
    assert balance_nano(gateway, key) == before - cost


def chat_classes(usage) -> dict[str, int]:
    """The usage classes of an OpenAI usage object as a client parsed it (its prompt count includes
    the cached tokens, its completion count the reasoning ones)."""
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    details = usage.completion_tokens_details
    reasoning = details.reasoning_tokens if details and details.reasoning_tokens else 0
    return {"in": usage.prompt_tokens - (cached or 0), "cr": cached or 0, "cw": 0, "cw1h": 0,
            "out": usage.completion_tokens - reasoning, "rsn": reasoning}
