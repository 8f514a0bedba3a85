"""`tollgate reconcile` proves Redis and the SQL ledger agree and the money invariants hold, and
finds drift and each broken invariant when they don't."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from helpers import api_get, reconcile_report, usage_record
from openai import OpenAI

from control_plane import db
from control_plane.billing import ledger
from control_plane.hot import redis_keys
from control_plane.hot.usage_records import parse
from control_plane.models import Usage


def reconcile_rows(gateway, check=True):
    result = gateway.cli("reconcile", "--json", check=check)
    return result, json.loads(result.stdout)["accounts"]


def test_reconcile_reports_no_drift_after_traffic(gateway, gw_customer):
    _, key = gw_customer
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    for _ in range(5):
        client.chat.completions.create(model="sandbox-chat", messages=[{"role": "user", "content": "Hi"}])
    result, rows = reconcile_rows(gateway)  # also correct while records are still undrained
    assert result.returncode == 0
    assert rows and all(row["ok"] and row["drift_nano"] == 0 for row in rows)


def test_reconcile_finds_drift_and_exits_non_zero(gateway):
    gateway.create_customer("drifting@example.com", "5")
    r = gateway.redis()
    account_id = _account_id(gateway, "drifting@example.com")
    account_hash = redis_keys.account(redis_keys.shard_of(account_id, int(gateway.env.get(
        "TOLLGATE_REDIS_SHARDS", "4"))), account_id)
    assert r.exists(account_hash)
    r.hincrby(account_hash, "bal", 7)
    try:
        result, rows = reconcile_rows(gateway, check=False)
        assert result.returncode == 1
        assert [row["drift_nano"] for row in rows if row["email"] == "drifting@example.com"] == [7]
    finally:
        r.hincrby(account_hash, "bal", -7)
    assert reconcile_rows(gateway)[0].returncode == 0


def test_admin_api_reports_reconciliation_and_refuses_customers(gateway, gw_customer):
    _, key = gw_customer
    gateway.cli("admin", "create", "admin@example.com")
    admin_key = gateway.cli("admin", "key", "create", "admin@example.com", "--read-only").stdout.strip().splitlines()[-1]
    body = api_get(gateway, admin_key, "/api/admin/v1/reconcile")
    assert body["drifting"] == 0 and body["accounts"]
    for customer_key in (key, gateway.create_key("admin@example.com")):  # an admin's customer key neither
        try:
            api_get(gateway, customer_key, "/api/admin/v1/reconcile")
            raise AssertionError("a customer key read the admin endpoint")
        except urllib.error.HTTPError as e:
            assert e.code == 401


def _account_id(gateway, email):
    return next(row["account_id"] for row in reconcile_rows(gateway)[1] if row["email"] == email)


# Without a gateway: the control plane's Redis and SQL, each invariant broken on purpose.

def redis_hash(settings, customer, kind) -> str:
    shard = customer.shard(settings)
    return {"acct": redis_keys.account(shard, customer.account.id), "key": redis_keys.key_state(shard, customer.key.id),
            "lease": redis_keys.lease(shard, customer.key.id)}[kind]


def add_usage(settings, customer, rid, cost, hold, overage=0):
    """A usage row in SQL as the worker writes one, of a record charged `cost` within `hold`."""
    record = usage_record(customer, None, rid, cost=str(cost), hold=str(hold), over=str(overage))
    with db.session_scope(settings) as session:
        session.add(Usage(**parse(record).row_values(None)))


def test_a_clean_state_reconciles_with_exit_0(cli, customer):
    status, report = reconcile_report(cli)
    assert status == 0
    assert (report["ok"], report["drifting"], report["violations"], report["quarantined"]) == (True, 0, [], [])
    assert [(row["email"], row["redis_nano"], row["drift_nano"]) for row in report["accounts"]] == [
        ("alice@example.com", 10_000_000_000, 0)]


@pytest.mark.parametrize("kind, field, check", [
    ("acct", "bal", "negative_balance"),
    ("acct", "held", "negative_held"),
    ("key", "held", "negative_held"),
    ("lease", "node-a", "negative_held"),
])
def test_a_negative_redis_value_is_reported_with_exit_1(settings, cli, redis_client, customer, kind, field, check):
    name = redis_hash(settings, customer, kind)
    redis_client.hset(name, field, -7)
    status, report = reconcile_report(cli)
    assert status == 1 and report["ok"] is False
    assert report["violations"] == [{
        "check": check, "store": "redis", "subject": f"{name} {field}", "account_id": customer.account.id,
        "key_id": None if kind == "acct" else customer.key.id, "value_nano": -7, "bound_nano": 0}]


def test_a_negative_sql_balance_is_reported_with_exit_1(settings, cli, customer):
    with db.session_scope(settings) as session:
        ledger.adjust(session, customer.account.id, -10_000_000_003, "a correction too many")  # not yet in Redis
    status, report = reconcile_report(cli)
    assert status == 1
    assert report["drifting"] == 0
    assert report["violations"] == [{
        "check": "negative_balance", "store": "sql", "subject": f"account {customer.account.id} balance_nano",
        "account_id": customer.account.id, "key_id": None, "value_nano": -3, "bound_nano": 0}]


def test_a_key_spent_above_its_limit_in_redis_is_reported_with_exit_1(settings, cli, redis_client, make_customer):
    limited = make_customer("limited@example.com", limit_usd="0.5")
    name = redis_hash(settings, limited, "key")
    redis_client.hset(name, "spent", 500_000_001)
    status, report = reconcile_report(cli)
    assert status == 1
    assert report["violations"] == [{
        "check": "key_over_limit", "store": "redis", "subject": f"{name} spent", "account_id": limited.account.id,
        "key_id": limited.key.id, "value_nano": 500_000_001, "bound_nano": 500_000_000}]


def test_a_key_whose_usage_in_sql_is_above_its_limit_is_reported_with_exit_1(settings, cli, make_customer):
    limited = make_customer("limited@example.com", limit_usd="0.5")
    add_usage(settings, limited, "req-1", 300_000_000, 300_000_000)
    add_usage(settings, limited, "req-2", 200_000_001, 200_000_001)
    status, report = reconcile_report(cli)
    assert status == 1
    assert report["violations"] == [{
        "check": "key_over_limit", "store": "sql", "subject": f"key {limited.key.id} Σ usage cost_nano",
        "account_id": limited.account.id, "key_id": limited.key.id, "value_nano": 500_000_001,
        "bound_nano": 500_000_000}]


def test_a_usage_row_charged_above_its_hold_is_reported_with_exit_1(settings, cli, customer):
    add_usage(settings, customer, "req-1", 1_000_001, 1_000_000)
    status, report = reconcile_report(cli)
    assert status == 1
    assert report["violations"] == [{
        "check": "charged_above_hold", "store": "sql", "subject": "usage req-1 cost_nano",
        "account_id": customer.account.id, "key_id": customer.key.id, "value_nano": 1_000_001,
        "bound_nano": 1_000_000}]


def test_a_key_whose_redis_spend_is_not_its_usage_is_reported_with_exit_1(settings, cli, redis_client, customer):
    add_usage(settings, customer, "req-1", 300_000_000, 300_000_000)
    name = redis_hash(settings, customer, "key")
    redis_client.hset(name, "spent", 300_000_007)
    status, report = reconcile_report(cli)
    assert status == 1 and report["ok"] is False
    assert report["keys_drifting"] == [{"key_id": customer.key.id, "account_id": customer.account.id,
                                        "redis_nano": 300_000_007, "expected_nano": 300_000_000, "drift_nano": 7}]
    assert report["violations"] == [] and report["drifting"] == 0


def test_overage_is_listed_per_account_and_does_not_fail(settings, cli, redis_client, customer, make_customer):
    bob = make_customer("bob@example.com")
    add_usage(settings, customer, "req-1", 1_000_000, 1_000_000, overage=250_000)
    add_usage(settings, customer, "req-2", 1_000_000, 1_000_000, overage=5)
    add_usage(settings, bob, "req-3", 1_000_000, 1_000_000)
    redis_client.hset(redis_hash(settings, customer, "key"), "spent", 2_000_000)  # as the settlements did
    redis_client.hset(redis_hash(settings, bob, "key"), "spent", 1_000_000)
    status, report = reconcile_report(cli)
    assert status == 0 and report["ok"] is True
    assert {row["email"]: row["overage_nano"] for row in report["accounts"]} == {
        "alice@example.com": 250_005, "bob@example.com": 0}
    assert report["overage_nano"] == 250_005


def test_the_cli_stores_its_run_for_the_admin_overview(settings, cli, customer):
    import getpass

    from control_plane.models import ReconcileRun

    assert cli("reconcile").exit_code == 0
    with db.read_session(settings) as session:
        [run] = session.query(ReconcileRun).all()
    assert (run.actor, run.ok, run.accounts, run.drifting) == (f"cli {getpass.getuser()}", True, 1, 0)
