"""Publishing to Redis: keys, balances, credits, providers and models as docs/internals.md says."""
import json

import pytest
from helpers import usage_entry, usage_record
from sqlalchemy import select

from control_plane import db
from control_plane.accounts import accounts
from control_plane.accounts import api_keys as keys
from control_plane.billing import ledger
from control_plane.catalog import resolve
from control_plane.catalog import upstreams as catalog
from control_plane.errors import ServiceError
from control_plane.hot import credits, publish, redis_keys
from control_plane.models import ApiKey, LedgerTransaction, Model, Provider
from control_plane.money import usd_to_nano


def _account_hash(redis_client, settings, customer):
    return redis_client.hgetall(redis_keys.account(customer.shard(settings), customer.account.id))


def test_key_is_stored_only_as_its_sha256(settings, customer):
    with db.session_scope(settings) as session:
        row = session.get(ApiKey, customer.key.id)
        stored = [str(getattr(row, column.key)) for column in ApiKey.__table__.columns]
    assert customer.plaintext.startswith("sk-tg-") and len(customer.plaintext) == 6 + 43
    assert row.key_hash == keys.hash_key(customer.plaintext)
    assert not any(customer.plaintext in value for value in stored)
    assert row.prefix == customer.plaintext[:10]


def test_published_key_has_lookup_and_counters(settings, redis_client, make_customer):
    customer = make_customer(limit_usd="2.5")
    lookup = redis_client.hgetall(redis_keys.apikey(keys.hash_key(customer.plaintext)))
    assert lookup == {"id": str(customer.key.id), "acct": str(customer.account.id),
                      "shard": str(customer.shard(settings)), "status": "active"}
    state = redis_client.hgetall(redis_keys.key_state(customer.shard(settings), customer.key.id))
    assert state == {"limit": "2500000000", "spent": "0", "held": "0"}


def test_key_without_limit_has_no_limit_field(settings, redis_client, customer):
    state = redis_client.hgetall(redis_keys.key_state(customer.shard(settings), customer.key.id))
    assert "limit" not in state


def test_rate_limits_are_published_and_removed(settings, redis_client, customer):
    lookup = redis_keys.apikey(customer.key.key_hash)
    with db.session_scope(settings) as session:
        key = session.get(ApiKey, customer.key.id)
        key.rpm, key.tpm = 60, 100_000
        publish.publish_key(session, settings, key)
        assert redis_client.hmget(lookup, "rpm", "tpm") == ["60", "100000"]
        key.tpm = None
        publish.publish_key(session, settings, key)
    assert redis_client.hmget(lookup, "rpm", "tpm") == ["60", None]


def test_revoked_key_is_published_as_revoked(settings, redis_client, customer):
    with db.session_scope(settings) as session:
        publish.revoke_key(settings, keys.revoke_key(session, customer.key.id))
    assert redis_client.hget(redis_keys.apikey(customer.key.key_hash), "status") == "revoked"


def test_credit_reaches_redis_balance(settings, redis_client, customer):
    assert _account_hash(redis_client, settings, customer) == {"bal": "10000000000", "held": "0"}


def test_credit_applied_twice_counts_once(settings, redis_client, customer):
    with db.session_scope(settings) as session:
        transaction = ledger.adjust(session, customer.account.id, usd_to_nano("1.5"), "goodwill")
    for _attempt in range(2):
        with db.session_scope(settings) as session:
            credits.apply_credit(session, settings, session.get(LedgerTransaction, transaction.id))
    assert _account_hash(redis_client, settings, customer)["bal"] == "11500000000"


def test_unpublished_credits_are_applied_and_marked(settings, redis_client, customer):
    with db.session_scope(settings) as session:
        ledger.adjust(session, customer.account.id, -usd_to_nano("4"), "correction")
    with db.session_scope(settings) as session:
        assert credits.apply_unpublished(session, settings) == 1
    with db.session_scope(settings) as session:
        assert credits.apply_unpublished(session, settings) == 0
        assert all(session.scalars(select(LedgerTransaction.published)))
    assert _account_hash(redis_client, settings, customer)["bal"] == "6000000000"


def test_credit_to_an_unpublished_account_creates_its_balance_once(settings, redis_client):
    with db.session_scope(settings) as session:
        account = accounts.create_account(session, "new@example.com")
        transaction = ledger.credit(session, "deposit", account.id, 5_000, "deposit:new", "Deposit")
    with db.session_scope(settings) as session:
        credits.apply_credit(session, settings, session.get(LedgerTransaction, transaction.id))
    shard = redis_keys.shard_of(account.id, settings.redis_shards)
    assert redis_client.hget(redis_keys.account(shard, account.id), "bal") == "5000"


def test_missing_balance_is_sql_minus_usage_still_in_the_stream(settings, redis_client, customer):
    shard = customer.shard(settings)
    redis_client.delete(redis_keys.account(shard, customer.account.id))
    redis_client.xadd(redis_keys.usage_stream(shard), usage_entry(usage_record(customer, None, "undrained-1",
                                                                             cost="1234")))
    with db.session_scope(settings) as session:
        assert publish.publish_missing_accounts(session, settings) == 1
    assert _account_hash(redis_client, settings, customer) == {"bal": str(10_000_000_000 - 1234), "held": "0"}


def test_existing_balance_is_never_overwritten(settings, redis_client, customer):
    name = redis_keys.account(customer.shard(settings), customer.account.id)
    redis_client.hset(name, "bal", 7)
    with db.session_scope(settings) as session:
        assert publish.publish_account(session, settings, customer.account.id) is False
    assert redis_client.hget(name, "bal") == "7"


def test_provider_is_published_with_resolved_endpoint(settings, redis_client):
    with db.session_scope(settings) as session:
        provider = catalog.upsert_provider(session, settings, "local", "anthropic", "https://127.0.0.1/anthropic/",
                                           " secret ")
        publish.publish_provider(settings, provider)
    assert json.loads(redis_client.get("tg:provider:local")) == {
        "name": "local", "protocol": "anthropic", "scheme": "https", "host": "127.0.0.1", "port": 443,
        "ips": ["127.0.0.1"], "base_path": "/anthropic", "api_key": "secret"}


def test_provider_host_names_resolve_ipv4_first(monkeypatch):
    answers = [(10, 1, 6, "", ("::1", 80, 0, 0)), (2, 1, 6, "", ("127.0.0.1", 80)), (2, 1, 6, "", ("127.0.0.1", 80))]
    monkeypatch.setattr(resolve.socket, "getaddrinfo", lambda *args, **kwargs: answers)
    assert resolve.resolve_ips("example.test", 80) == ["127.0.0.1", "::1"]


def test_provider_key_is_stored_encrypted(settings):
    with db.session_scope(settings) as session:
        provider = catalog.upsert_provider(session, settings, "p", "openai", "http://127.0.0.1:1/v1", "sk-upstream")
        assert "sk-upstream" not in provider.api_key_encrypted
    assert (settings.secret_key_file.stat().st_mode & 0o777) == 0o600


def test_model_is_published_with_resolved_prices(settings, redis_client, price_version):
    with db.session_scope(settings) as session:
        publish.publish_model(session, settings, session.scalar(select(Model)))
    resolved = {"input": 150_000_000, "cached_input": 75_000_000, "cache_write": 150_000_000,
                "cache_write_1h": 150_000_000, "output": 600_000_000, "reasoning": 600_000_000}
    assert json.loads(redis_client.get("tg:model:test-chat")) == {
        "name": "test-chat", "max_output": 16384, "max_input": 200000, "at_cost": True,
        "price": {"version": 0, **resolved}, "retry_on": [429, 500, 502, 503, 504, 529],
        "routes": [{"id": price_version.route_id, "provider": "test", "upstream_model": "test-chat", "priority": 0,
                    "weight": 1, "cost": {"version": price_version.id, **resolved}}]}
    assert redis_client.smembers("tg:models") == {"test-chat"}


def test_price_change_adds_a_version_and_same_prices_do_not(settings, price_version):
    prices = {"input": 150_000_000, "cached_input": 75_000_000, "output": 600_000_000}
    with db.session_scope(settings) as session:
        catalog.upsert_model(session, "test-chat", "test", prices)
        assert catalog.current_cost(session, price_version.route_id).id == price_version.id
        catalog.upsert_model(session, "test-chat", "test", {**prices, "output": 700_000_000})
        assert catalog.current_cost(session, price_version.route_id).id != price_version.id


def test_unresolvable_provider_is_a_clear_error(settings):
    provider = Provider(name="x", protocol="openai", base_url="https://no-such-host.invalid/v1",
                        api_key_encrypted="")
    with pytest.raises(ServiceError, match="cannot resolve no-such-host.invalid"):
        publish.publish_provider(settings, provider)


def test_publish_all_removes_what_sql_no_longer_has(settings, redis_client, customer, price_version):
    """A rotation or an alias removal made while Redis was away (SQL changed, Redis did not):
    publishing everything again deletes the old secret's look-up and the removed alias."""
    from control_plane.hot import republish

    with db.session_scope(settings) as session:
        catalog.add_alias(session, "test-alias", "test-chat")
        publish.publish_model(session, settings, session.scalar(select(Model)))
    old_lookup = redis_keys.apikey(keys.hash_key(customer.plaintext))
    with db.session_scope(settings) as session:  # SQL only, as when Redis did not answer
        new_secret, _old_hash = keys.rotate_key(session, session.get(ApiKey, customer.key.id))
        catalog.remove_alias(session, "test-alias")
    assert redis_client.exists(old_lookup) and redis_client.exists("tg:model:test-alias")
    with db.session_scope(settings) as session:
        republish.publish_all(session, settings)
    assert not redis_client.exists(old_lookup) and not redis_client.exists("tg:model:test-alias")
    assert redis_client.hget(redis_keys.apikey(keys.hash_key(new_secret)), "status") == "active"
    assert redis_client.smembers("tg:models") == {"test-chat"}
