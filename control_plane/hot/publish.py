"""Publishing SQL's configuration (keys, providers, models and their aliases) to Redis, and the hot hashes it
starts from.

The control plane is the only writer of configuration. It creates an account's or a key's hot
hash once, from SQL; after that only the hot path and the idempotent credit script move them.
Key names: redis_keys.py; layout: docs/internals.md.
"""
from __future__ import annotations

import json
import logging
import math

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import crypto
from ..catalog import pricing, upstreams
from ..catalog.resolve import resolve_ips
from ..errors import ServiceError
from ..models import Account, ApiKey, Model, Provider
from ..settings import Settings
from ..usage_classes import PRICE_FIELDS
from . import redis_keys
from .connection import client, pipeline_across_slots, run_script, shard
from .expected import initial_balance, initial_spent

log = logging.getLogger(__name__)

EXISTS_PAGE = 1000

# KEYS[1] a hash; ARGV field/value pairs. Creates the hash only if it does not exist yet.
CREATE_IF_MISSING = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


# Accounts ---------------------------------------------------------------------------------


def publish_account(session: Session, settings: Settings, account_id: int) -> bool:
    """Create the account's hot hash if it is missing; True if it was created."""
    account_shard = shard(settings, account_id)
    name = redis_keys.account(account_shard, account_id)
    if client(settings).exists(name):
        return False
    balance = initial_balance(session, settings, account_shard, account_id)
    return bool(run_script(settings, CREATE_IF_MISSING, [name], ["bal", balance, "held", 0]))


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


# Keys -------------------------------------------------------------------------------------


def publish_key(session: Session, settings: Settings, key: ApiKey) -> None:
    """The account, the key's counters and limit first, its look-up hash last: once nginx can
    find a key, everything it needs to admit a request is there."""
    publish_account(session, settings, key.account_id)
    account_shard = shard(settings, key.account_id)
    state = redis_keys.key_state(account_shard, key.id)
    connection = client(settings)
    if not connection.exists(state):
        spent = initial_spent(session, settings, account_shard, key.id)
        run_script(settings, CREATE_IF_MISSING, [state], ["spent", spent, "held", 0])
    if key.limit_nano is None:
        connection.hdel(state, "limit")
    else:
        connection.hset(state, "limit", key.limit_nano)
    _publish_key_lookup(settings, key, session.get(Account, key.account_id))


def publish_account_keys(session: Session, settings: Settings, account_id: int) -> None:
    """Every key of the account again: after its rate limits or its status (suspension) changed."""
    for key in session.scalars(select(ApiKey).where(ApiKey.account_id == account_id)):
        publish_key(session, settings, key)


def revoke_key(settings: Settings, key: ApiKey) -> None:
    """Tell nginx a key SQL has revoked is refused (it notices within its 1 s cache)."""
    client(settings).hset(redis_keys.apikey(key.key_hash), "status", key.status)


def rotate_key(session: Session, settings: Settings, key: ApiKey, old_hash: str) -> None:
    """A key given a new secret (its id, counters and limits stay): its new look-up hash is
    published, then the old secret's is deleted, so nginx refuses the old secret once its 1 s
    cache lets go of it."""
    publish_key(session, settings, key)
    client(settings).delete(redis_keys.apikey(old_hash))


def _publish_key_lookup(settings: Settings, key: ApiKey, owner: Account) -> None:
    """id, acct, shard, status ("suspended" for an active key of a suspended account), rpm / tpm when the key, or else its account, has them (absent:
    no limit), capfb "1" when its fallback prices are capped (absent: not), models (the JSON
    array of the names it may use; absent: every model) and exp (its expiry in unix seconds,
    rounded down so the key is never admitted after it; absent: never)."""
    name = redis_keys.apikey(key.key_hash)
    status = "suspended" if key.status == "active" and owner.status == "suspended" else key.status
    fields = {"id": key.id, "acct": key.account_id, "shard": shard(settings, key.account_id), "status": status}
    optional = {"rpm": key.rpm if key.rpm is not None else owner.rpm,
                "tpm": key.tpm if key.tpm is not None else owner.tpm,
                "capfb": 1 if key.cap_fallback_price else None,
                "models": key.allowed_models,
                "exp": None if key.expires_at is None else math.floor(key.expires_at.timestamp())}
    fields.update({field: value for field, value in optional.items() if value is not None})
    pipe = client(settings).pipeline(transaction=True)  # one key: atomic on a cluster too
    pipe.hset(name, mapping=fields)
    unset = [field for field, value in optional.items() if value is None]
    if unset:
        pipe.hdel(name, *unset)
    pipe.execute()


# Catalog ----------------------------------------------------------------------------------


def publish_provider(settings: Settings, provider: Provider) -> None:
    endpoint = upstreams.parse_base_url(provider.base_url)
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


def model_document(session: Session, model: Model) -> dict | None:
    """tg:model:<name> (docs/internals.md): its routes in the order they are tried, each with its
    cost resolved, and the price holds are computed at: a fixed-price model's customer price, or
    for a model charged at cost the dearest route's cost per usage class (version 0: never
    charged by itself, each request is charged at its route's cost version). Routes to a disabled
    provider are left out; None when that leaves none: the model is not served."""
    all_routes = upstreams.routes_of(session, model.id)
    if not all_routes:
        raise ServiceError(f"model {model.name} has no route (add one with `tollgate route add`)")
    routes = []
    for route in filter(upstreams.is_served, all_routes):
        cost = upstreams.current_cost(session, route.id)
        if cost is None:
            raise ServiceError(f"route {route.id} of model {model.name} has no cost")
        routes.append({"id": route.id, "provider": route.provider.name, "upstream_model": route.upstream_model,
                       "priority": route.priority, "weight": route.weight,
                       "cost": {"version": cost.id, **pricing.resolve(cost)}})
    if not routes:
        return None
    if model.at_cost:
        price = {"version": 0, **{field: max(route["cost"][field] for route in routes) for field in PRICE_FIELDS}}
    else:
        version = upstreams.current_price(session, model.id)
        if version is None:
            raise ServiceError(f"model {model.name} has no price")
        price = {"version": version.id, **pricing.resolve(version)}
    return {"name": model.name, "max_output": model.max_output, "max_input": model.max_input,
            "at_cost": model.at_cost, "price": price, "retry_on": upstreams.retry_statuses(model), "routes": routes}


def publish_model(session: Session, settings: Settings, model: Model) -> bool:
    """The model's document under its name and under each of its aliases, all of them listed;
    True. A model whose every route's provider is disabled is withdrawn instead (its names
    answer 404 model_not_found, as an unknown model, once nginx's 1 s cache lets go): False."""
    document = model_document(session, model)
    names = [model.name, *(alias.name for alias in upstreams.aliases(session, model.id))]
    pipe = pipeline_across_slots(settings)
    if document is None:
        for name in names:
            pipe.delete(redis_keys.model(name))
        pipe.srem(redis_keys.MODELS, *names)
    else:
        text = json.dumps(document)
        for name in names:
            pipe.set(redis_keys.model(name), text)
        pipe.sadd(redis_keys.MODELS, *names)
    pipe.execute()
    return document is not None


def publish_provider_change(session: Session, settings: Settings, provider: Provider) -> list[str]:
    """After a provider was disabled or enabled: an enabled one itself (first, so its routes
    find it), then every model with a route to it, whose documents leave out a disabled
    provider's routes; the names of those models left with no route served. A disabled
    provider's own document stays: a request that picked one of its routes from a model document
    still cached finds it."""
    if provider.disabled_at is None:
        publish_provider(settings, provider)
    models = {route.model_id: route.model for route in upstreams.routes_via(session, provider.id)}
    return [model.name for model in models.values() if not publish_model(session, settings, model)]


def unpublish_alias(settings: Settings, name: str) -> None:
    """A removed alias: nginx stops answering to it (within its 1 s cache)."""
    pipe = pipeline_across_slots(settings)
    pipe.delete(redis_keys.model(name))
    pipe.srem(redis_keys.MODELS, name)
    pipe.execute()
