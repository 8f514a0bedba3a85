"""Redis key names, control-plane side. The hot path's twin is lua/tollgate/keys.lua;
both follow docs/internals.md."""
from __future__ import annotations

PREFIX = "tg:"
CONSUMER_GROUP = "tollgate"


def shard_of(account_id: int, shards: int) -> int:
    return int(account_id) % shards


def tag(shard: int) -> str:
    return f"{PREFIX}{{s{shard}}}:"


def apikey(key_hash: str) -> str:
    return f"{PREFIX}apikey:{key_hash}"


def model(name: str) -> str:
    return f"{PREFIX}model:{name}"


def provider(name: str) -> str:
    return f"{PREFIX}provider:{name}"


MODELS = f"{PREFIX}models"
# Set by publish_all: its absence means Redis lost its data (or is new) and needs everything again.
PUBLISHED = f"{PREFIX}published"


def account(shard: int, account_id: int) -> str:
    return f"{tag(shard)}acct:{account_id}"


def key_state(shard: int, key_id: int) -> str:
    return f"{tag(shard)}key:{key_id}"


def lease(shard: int, key_id: int) -> str:
    return f"{tag(shard)}lease:{key_id}"


def leases(shard: int) -> str:
    return f"{tag(shard)}leases"


def usage_stream(shard: int) -> str:
    return f"{tag(shard)}usage"


def applied(shard: int, tx_id: int) -> str:
    return f"{tag(shard)}applied:{tx_id}"
