"""Publishing to Redis: configuration (keys, providers, models) and the hot state it starts from.

The control plane is the only writer of configuration. It creates an account's or a key's hot
hash once, from SQL; after that only the hot path and the idempotent credit script move them.
Key names: redis_keys.py; layout: docs/internals.md.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import socket

import redis
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from . import crypto, pricing, redis_keys, usage_records
from .catalog import current_price, parse_base_url
from .errors import ServiceError
from .ledger import total
from .models import (
    Account,
    ApiKey,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Model,
    Provider,
    Usage,
    UsageQuarantine,
)
from .settings import Settings

log = logging.getLogger(__name__)

APPLIED_TTL_SECONDS = 30 * 24 * 3600
STREAM_PAGE = 1000
EXISTS_PAGE = 1000
UNPUBLISHED_PAGE = 1000

# KEYS[1] a hash; ARGV field/value pairs. Creates the hash only if it does not exist yet.
CREATE_IF_MISSING = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS[1] account hash, KEYS[2] applied marker; ARGV[1] amount (nano), ARGV[2] marker TTL (s).
# 1 applied now, 0 applied before, -1 the account hash is missing (publish the account first).
APPLY_CREDIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'bal', ARGV[1])
return 1
"""


_clients: dict[str, redis.Redis] = {}


def client(settings: Settings) -> redis.Redis:
    """The process's Redis client (and connection pool) for settings.redis_url."""
    connection = _clients.get(settings.redis_url)
    if connection is None:
        connection = _clients.setdefault(
            settings.redis_url, redis.Redis.from_url(settings.redis_url, decode_responses=True)
        )
    return connection


def _run(settings: Settings, source: str, keys: list, args: list):
    """EVALSHA of a script, loading it on first use."""
    return client(settings).register_script(source)(keys=keys, args=args)


def shard(settings: Settings, account_id: int) -> int:
    return redis_keys.shard_of(account_id, settings.redis_shards)


def resolve_ips(host: str, port: int) -> list[str]:
    """The host's addresses, IPv4 first; an IP literal is its own list."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServiceError(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    return sorted(addresses, key=lambda address: ":" in address)


# Accounts ---------------------------------------------------------------------------------


def publish_account(session: Session, settings: Settings, account_id: int) -> bool:
    """Create the account's hot hash if it is missing; True if it was created."""
    account_shard = shard(settings, account_id)
    name = redis_keys.account(account_shard, account_id)
    if client(settings).exists(name):
        return False
    balance = _initial_balance(session, settings, account_shard, account_id)
    return bool(_run(settings, CREATE_IF_MISSING, [name], ["bal", balance, "held", 0]))


def publish_missing_accounts(session: Session, settings: Settings) -> int:
    """publish_account for every account whose hot hash is missing; how many were created."""
    account_ids = list(session.scalars(select(Account.id).order_by(Account.id)))
    created = 0
    for start in range(0, len(account_ids), EXISTS_PAGE):
        page = account_ids[start : start + EXISTS_PAGE]
        pipe = client(settings).pipeline(transaction=False)
        for account_id in page:
            pipe.exists(redis_keys.account(shard(settings, account_id), account_id))
        for account_id, exists in zip(page, pipe.execute(), strict=True):
            if not exists and publish_account(session, settings, account_id):
                log.info("published missing balance of account %s", account_id)
                created += 1
    return created


def balance_nano(settings: Settings, account_id: int) -> int | None:
    """The live balance (usage already debited), or None if the account is not published."""
    value = client(settings).hget(redis_keys.account(shard(settings, account_id), account_id), "bal")
    return None if value is None else int(value)


def _initial_balance(session: Session, settings: Settings, account_shard: int, account_id: int) -> int:
    return expected_balance(session, account_id, _undrained(settings, account_shard, "acct", account_id))


def expected_balance(session: Session, account_id: int, undrained: dict[str, int]) -> int:
    """What Redis `bal` must be: the SQL balance of the transactions already applied to Redis
    (published), minus the usage Redis debited that SQL has not recorded yet (`undrained`:
    request id -> cost, read from the stream before this) or has quarantined. One statement, so
    one snapshot, even while the worker drains."""
    unpublished = (
        select(total(LedgerEntry.amount))
        .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerEntry.ledger_account_id == LedgerAccount.id)
        .where(LedgerAccount.account_id == account_id, ~LedgerTransaction.published)
        .scalar_subquery()
    )
    balance = session.scalar(
        select(
            Account.balance_nano - unpublished + _recorded_cost(undrained)
            - _quarantined_cost(UsageQuarantine.account_id, account_id, undrained)
        ).where(Account.id == account_id)
    )
    if balance is None:
        raise ServiceError(f"no account with id {account_id}")
    return balance - sum(undrained.values())


def _undrained(settings: Settings, account_shard: int, field: str, value: int) -> dict[str, int]:
    """request id -> cost of the shard's stream records whose `field` is `value`."""
    stream = redis_keys.usage_stream(account_shard)
    found: dict[str, int] = {}
    start = "-"
    while True:
        page = client(settings).xrange(stream, min=start, count=STREAM_PAGE)
        for _entry_id, fields in page:
            for record in usage_records.valid_records(fields):
                owner = record.account_id if field == "acct" else record.key_id
                if owner == value:
                    found[record.request_id] = record.cost_nano
        if len(page) < STREAM_PAGE:
            return found
        start = "(" + page[-1][0]


# Keys -------------------------------------------------------------------------------------


def publish_key(session: Session, settings: Settings, key: ApiKey) -> None:
    """The account, the key's counters and limit first, its look-up hash last: once nginx can
    find a key, everything it needs to admit a request is there."""
    publish_account(session, settings, key.account_id)
    account_shard = shard(settings, key.account_id)
    state = redis_keys.key_state(account_shard, key.id)
    connection = client(settings)
    if not connection.exists(state):
        spent = _initial_spent(session, settings, account_shard, key.id)
        _run(settings, CREATE_IF_MISSING, [state], ["spent", spent, "held", 0])
    if key.limit_nano is None:
        connection.hdel(state, "limit")
    else:
        connection.hset(state, "limit", key.limit_nano)
    _publish_key_lookup(settings, key, session.get(Account, key.account_id))


def revoke_key(settings: Settings, key: ApiKey) -> None:
    """Tell nginx a key SQL has revoked is refused (it notices within its 1 s cache)."""
    client(settings).hset(redis_keys.apikey(key.key_hash), "status", key.status)


def _publish_key_lookup(settings: Settings, key: ApiKey, owner: Account) -> None:
    """id, acct, shard, status, and rpm / tpm when the key, or else its account, has them
    (absent: no limit)."""
    name = redis_keys.apikey(key.key_hash)
    fields = {"id": key.id, "acct": key.account_id, "shard": shard(settings, key.account_id), "status": key.status}
    rates = {"rpm": key.rpm if key.rpm is not None else owner.rpm,
             "tpm": key.tpm if key.tpm is not None else owner.tpm}
    fields.update({field: rate for field, rate in rates.items() if rate is not None})
    pipe = client(settings).pipeline()
    pipe.hset(name, mapping=fields)
    unset = [field for field, rate in rates.items() if rate is None]
    if unset:
        pipe.hdel(name, *unset)
    pipe.execute()


def _initial_spent(session: Session, settings: Settings, account_shard: int, key_id: int) -> int:
    """Σ cost of the key's usage: recorded in SQL plus still in the stream (one snapshot)."""
    undrained = _undrained(settings, account_shard, "key", key_id)
    recorded = select(total(Usage.cost_nano)).where(Usage.key_id == key_id).scalar_subquery()
    quarantined = _quarantined_cost(UsageQuarantine.key_id, key_id, undrained)
    return session.scalar(select(recorded + quarantined - _recorded_cost(undrained))) + sum(undrained.values())


# Catalog ----------------------------------------------------------------------------------


def publish_provider(settings: Settings, provider: Provider) -> None:
    endpoint = parse_base_url(provider.base_url)
    document = {
        "name": provider.name,
        "protocol": provider.protocol,
        "scheme": endpoint.scheme,
        "host": endpoint.host,
        "port": endpoint.port,
        "ips": resolve_ips(endpoint.host, endpoint.port),
        "base_path": endpoint.base_path,
        "api_key": crypto.decrypt(settings, provider.api_key_encrypted),
    }
    client(settings).set(redis_keys.provider(provider.name), json.dumps(document))


def publish_providers(session: Session, settings: Settings) -> None:
    """Every provider, re-resolving hosts; one that fails is logged and keeps its last copy."""
    for provider in session.scalars(select(Provider).order_by(Provider.id)):
        try:
            publish_provider(settings, provider)
        except ServiceError as exc:
            log.error("cannot publish provider %s: %s", provider.name, exc)


def publish_model(session: Session, settings: Settings, model: Model) -> None:
    price = current_price(session, model.id)
    if price is None:
        raise ServiceError(f"model {model.name} has no price")
    document = {
        "name": model.name,
        "max_output": model.max_output,
        "max_input": model.max_input,
        "routes": [
            {"provider": model.provider.name, "upstream_model": model.upstream_model, "priority": 0, "weight": 1}
        ],
        "price": {"version": price.id, **pricing.resolve(price)},
    }
    pipe = client(settings).pipeline()
    pipe.set(redis_keys.model(model.name), json.dumps(document))
    pipe.sadd(redis_keys.MODELS, model.name)
    pipe.execute()


# Credits ----------------------------------------------------------------------------------


def apply_credit(session: Session, settings: Settings, transaction: LedgerTransaction) -> None:
    """Apply a committed, unpublished transaction to the Redis balance exactly once, then mark
    it published (the caller commits)."""
    amount = session.scalar(
        select(LedgerEntry.amount)
        .join(LedgerAccount, LedgerEntry.ledger_account_id == LedgerAccount.id)
        .where(LedgerEntry.transaction_id == transaction.id, LedgerAccount.account_id == transaction.account_id)
    )
    if amount is not None:
        account_shard = shard(settings, transaction.account_id)
        keys = [
            redis_keys.account(account_shard, transaction.account_id),
            redis_keys.applied(account_shard, transaction.id),
        ]
        args = [amount, APPLIED_TTL_SECONDS]
        if _run(settings, APPLY_CREDIT, keys, args) == -1:
            # The new hash leaves this (unpublished) transaction out; apply it on top.
            publish_account(session, settings, transaction.account_id)
            _run(settings, APPLY_CREDIT, keys, args)
    transaction.published = True


def apply_unpublished(session: Session, settings: Settings) -> int:
    """Apply every unpublished transaction (a crash may have left some); how many."""
    applied = 0
    while True:
        page = list(
            session.scalars(
                select(LedgerTransaction)
                .where(~LedgerTransaction.published)
                .order_by(LedgerTransaction.id)
                .limit(UNPUBLISHED_PAGE)
            )
        )
        for transaction in page:
            apply_credit(session, settings, transaction)
        applied += len(page)
        if len(page) < UNPUBLISHED_PAGE:
            return applied


# Everything -------------------------------------------------------------------------------


def publish_all(session: Session, settings: Settings) -> None:
    """Everything SQL knows, for a fresh or restarted Redis (used at start-up)."""
    publish_providers(session, settings)
    for model in session.scalars(select(Model).order_by(Model.id)):
        publish_model(session, settings, model)
    publish_missing_accounts(session, settings)
    for key in session.scalars(select(ApiKey).order_by(ApiKey.id)):
        publish_key(session, settings, key)
    apply_unpublished(session, settings)
    client(settings).set(redis_keys.PUBLISHED, "1")


def republish_if_lost(session: Session, settings: Settings) -> bool:
    """publish_all when Redis came back without its data; True if it did."""
    if client(settings).exists(redis_keys.PUBLISHED):
        return False
    publish_all(session, settings)
    return True


def _recorded_cost(undrained: dict[str, int]):
    """Σ cost of those stream records that SQL has already recorded (drained meanwhile)."""
    return (
        select(total(Usage.cost_nano))
        .where(Usage.request_id.in_(list(undrained)))
        .scalar_subquery()
    )


def _quarantined_cost(owner, value: int, undrained: dict[str, int]):
    """Σ cost of the quarantined records whose `owner` column is `value` and whose cost could be
    read (Redis debited them when it settled them), except those still in the stream
    (`undrained` counts them)."""
    return (
        select(total(UsageQuarantine.cost_nano))
        .where(owner == value, UsageQuarantine.cost_nano.is_not(None),
               or_(UsageQuarantine.request_id.is_(None), UsageQuarantine.request_id.not_in(list(undrained))))
        .scalar_subquery()
    )
