"""A signed-in console customer with requests billed, for the tests of the dashboard, the logs and
the transactions pages: real requests to the shared instance's sandbox models, and failed
requests recorded as the hot path records them (a usage record in the account's usage stream),
drained by the instance's worker into SQL."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from types import SimpleNamespace

import sqlalchemy as sa
from console_client import ConsoleClient, settings_of, signed_in_client
from helpers import api_get, rows_of, usage_entry, usage_record

from control_plane.hot import redis_keys

# The sandbox's answer to HI is its 24-word sentence (helpers.py): to sandbox-chat ⌈74 bytes / 4⌉ =
# 19 prompt tokens, 24 output tokens: 19 × 150 + 24 × 600 = 17,250 nano-USD; to sandbox-reasoner
# ⌈78 / 4⌉ = 20 prompt tokens and 16 reasoning ones: 20 × 1,100 + 24 × 4,400 + 16 × 4,400 = 198,000.
HI = [{"role": "user", "content": "Hi"}]
CHAT_COST = 17_250
REASONER_COST = 198_000
REQUEST_LINK = re.compile(r'href="/console/logs/([^"?]+)"')


@dataclass
class ConsoleCustomer:
    client: ConsoleClient
    account_id: int
    keys: dict[str, str]  # by name: the secret
    key_ids: dict[str, int]  # by name: the key's id


def console_customer(gateway, mail_server, key_names=("main",), credit_usd: str = "5") -> ConsoleCustomer:
    """A new verified, signed-in account credited `credit_usd`, with a key of each name."""
    client = signed_in_client(gateway, mail_server)
    if credit_usd != "0":
        gateway.cli("credit", client.email, credit_usd, "--reason", "test credit")
    keys = {name: gateway.create_key(client.email, None, "--name", name) for name in key_names}
    with sa.create_engine(gateway.database_url).connect() as conn:
        account_id = conn.execute(sa.text("SELECT id FROM accounts WHERE email = :email"),
                                  {"email": client.email}).scalar_one()
        key_ids = dict(conn.execute(sa.text("SELECT name, id FROM api_keys WHERE account_id = :account"),
                                    {"account": account_id}).all())
    return ConsoleCustomer(client, account_id, keys, key_ids)


def chat(gateway, key: str, model: str = "sandbox-chat") -> None:
    """One request of HI to a sandbox model, answered 200."""
    assert gateway.chat(key, {"model": model, "messages": HI}) == 200


def record_failed(gateway, customer: ConsoleCustomer, key_name: str, rid: str, status: int, code: str,
                  message: str, at_ms: int | None = None) -> None:
    """A failed request's usage record (nothing billed) in the account's usage stream, as the hot
    path appends it, at `at_ms` (ms since the epoch; default now)."""
    owner = SimpleNamespace(account=SimpleNamespace(id=customer.account_id),
                            key=SimpleNamespace(id=customer.key_ids[key_name]))
    zero = {field: "0" for field in ("in", "cr", "cw", "cw1h", "out", "rsn", "cost", "hold")}
    values = usage_record(owner, None, rid, ts=str(at_ms or int(time.time() * 1000)), model="sandbox-chat",
                          asked="sandbox-chat", status=str(status), basis="none", ecode=code, emsg=message,
                          provider="sandbox", umodel="sandbox-chat", **zero)
    shard = redis_keys.shard_of(customer.account_id, settings_of(gateway).redis_shards)
    gateway.redis().xadd(redis_keys.usage_stream(shard), usage_entry(values))


def usage_of(gateway, key: str, query: str = "") -> list[dict]:
    """Every /api/v1/usage row of the key's account with the filters of `query` (a=b&c=d), newest
    first (all pages)."""
    rows, before = [], None
    while True:
        page = api_get(gateway, key, f"/api/v1/usage?limit=100&{query}" + (f"&before={before}" if before else ""))
        rows += page["data"]
        if not page["has_more"]:
            return rows
        before = page["next_before"]


def drained_rows(gateway, key: str, count: int) -> list[dict]:
    """The account's usage rows once the worker moved all `count` of them into SQL."""
    gateway.wait_drained()
    return rows_of(gateway, key, count)


def listed_request_ids(page_html: str) -> list[str]:
    """The request ids a console page links to, in page order."""
    return REQUEST_LINK.findall(page_html)
