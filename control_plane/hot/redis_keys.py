"""Redis key names, control-plane side. The hot path's twin is lua/tollgate/redis_keys.lua;
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


def route_health(node: str) -> str:
    """A gateway node's view of the routes it saw fail (written by nginx, expires unless refreshed):
    field route id, value its state as JSON."""
    return f"{PREFIX}route_health:{node}"


MODELS = f"{PREFIX}models"
# Set by publish_all: its absence means Redis lost its data (or is new) and needs everything again.
PUBLISHED = f"{PREFIX}published"
# The Redis run (INFO server run_id) whose hot state is known to agree with SQL: a Redis that
# restarted from its own files holds its previous run's id here (billing/restart_repair.py).
REDIS_RUN = f"{PREFIX}redis_run"


def restart_repair(run_id: str) -> str:
    """Claimed by the worker that corrects the hot state after Redis restarted as run `run_id`."""
    return f"{PREFIX}restart_repair:{run_id}"


def login_failures_of_email(email_hash: str) -> str:
    """Failed console logins to one email (its SHA-256) in the current window (expires with it)."""
    return f"{PREFIX}login_fail:email:{email_hash}"


def mail_to_address(address_hash: str) -> str:
    """Console mails sent to one address (its SHA-256) in the current hour (expires with it)."""
    return f"{PREFIX}mail:to:{address_hash}"


def login_failures_of_ip(ip: str) -> str:
    """Failed console logins from one client address in the current window."""
    return f"{PREFIX}login_fail:ip:{ip}"


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


def taken(shard: int, nonce: str) -> str:
    """What one attempt of an admin debit or refund took from an account's balance
    (billing/refunds.py), so a failed attempt gives it back exactly once."""
    return f"{tag(shard)}taken:{nonce}"


def batch(shard: int, batch_id: str) -> str:
    """Set once a settlement batch is applied (the settle script), so it applies once."""
    return f"{tag(shard)}batch:{batch_id}"


def lease_member(key_id: int, account_id: int, node: str) -> str:
    """A member of the leases zset (not a key): the key, its account and the node that holds the
    lease."""
    return f"{key_id}|{account_id}|{node}"


def parse_lease_member(member: str) -> tuple[int, int, str] | None:
    """(key id, account id, node) of a lease_member, or None when it is not one."""
    parts = member.split("|", 2)
    if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0]), int(parts[1]), parts[2]
