"""The `tollgate` command line, run through click's CliRunner against real Redis and SQL."""
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from control_plane import db
from control_plane.accounts import api_keys as keys
from control_plane.cli.main import main
from control_plane.hot import redis_keys
from control_plane.models import (
    Account,
    Alias,
    ApiKey,
    LedgerTransaction,
    Model,
    PriceVersion,
    Provider,
    Route,
)
from control_plane.ops import demo


@pytest.fixture
def alice(cli):
    result = cli("account", "create", "Alice@Example.com")
    assert result.exit_code == 0, result.output
    return "alice@example.com"


def test_account_create_prints_the_new_account(cli):
    result = cli("account", "create", "bob@example.com", "--admin")
    assert result.exit_code == 0
    assert result.stdout.startswith("created admin account ") and "(bob@example.com)" in result.stdout


def test_account_create_publishes_a_zero_balance(settings, cli, redis_client):
    cli("account", "create", "bob@example.com")
    with db.session_scope(settings) as session:
        account_id = session.scalar(select(Account.id))
    shard = redis_keys.shard_of(account_id, settings.redis_shards)
    assert redis_client.hgetall(redis_keys.account(shard, account_id)) == {"bal": "0", "held": "0"}


def test_duplicate_account_is_a_one_line_error_with_status_2(cli, alice):
    result = cli("account", "create", alice)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"Error: an account with email {alice} already exists"]


def test_unknown_email_is_a_one_line_error_with_status_2(cli):
    result = cli("balance", "nobody@example.com")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: no account with email 'nobody@example.com'"
    assert "Traceback" not in result.output


def test_key_create_prints_the_key_alone_on_the_last_line(settings, cli, alice):
    result = cli("key", "create", alice, "--name", "ci", "--limit-usd", "2.5")
    assert result.exit_code == 0, result.output
    *info, plaintext = result.stdout.strip().splitlines()
    assert plaintext.startswith("sk-tg-") and " " not in plaintext
    assert any("spend limit $2.50" in line for line in info)
    with db.session_scope(settings) as session:
        key = session.scalar(select(ApiKey))
        assert (key.key_hash, key.limit_nano, key.name) == (keys.hash_key(plaintext), 2_500_000_000, "ci")


def test_key_create_publishes_the_key(cli, redis_client, alice):
    plaintext = cli("key", "create", alice).stdout.strip().splitlines()[-1]
    assert redis_client.hget(redis_keys.apikey(keys.hash_key(plaintext)), "status") == "active"


def test_key_list_shows_prefixes_and_never_the_key(cli, alice):
    plaintext = cli("key", "create", alice, "--rpm", "60").stdout.strip().splitlines()[-1]
    result = cli("key", "list", alice)
    assert result.exit_code == 0
    assert plaintext not in result.stdout and keys.hash_key(plaintext) not in result.stdout
    [listed] = json.loads(result.stdout)
    assert (listed["prefix"], listed["status"], listed["limit"], listed["rpm"]) == (plaintext[:10], "active", None, 60)


def test_key_revoke_revokes_in_sql_and_redis(settings, cli, redis_client, alice):
    plaintext = cli("key", "create", alice).stdout.strip().splitlines()[-1]
    with db.session_scope(settings) as session:
        key_id = session.scalar(select(ApiKey.id))
    result = cli("key", "revoke", str(key_id))
    assert result.exit_code == 0
    assert redis_client.hget(redis_keys.apikey(keys.hash_key(plaintext)), "status") == "revoked"


def test_revoking_an_unknown_key_is_status_2(cli):
    assert cli("key", "revoke", "999").exit_code == 2


def test_credit_reaches_the_live_balance(cli, alice):
    result = cli("credit", alice, "12.5", "--reason", "welcome")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("balance $12.50")
    assert json.loads(cli("balance", alice).stdout) == {"balance": 12.5, "balance_nano": 12_500_000_000,
                                                         "currency": "USD"}


def test_negative_credit_corrects_a_balance(cli, alice):
    cli("credit", alice, "10", "--reason", "deposit by wire")
    result = cli("credit", alice, "-0.000000001", "--reason", "typo")
    assert result.exit_code == 0, result.output
    assert '"balance": 9.999999999,' in cli("balance", alice).stdout


def test_credit_is_published_and_recorded_as_an_adjustment(settings, cli, alice):
    cli("credit", alice, "3", "--reason", "goodwill")
    with db.session_scope(settings) as session:
        transaction = session.scalar(select(LedgerTransaction))
        assert (transaction.kind, transaction.description, transaction.published) == ("adjustment", "goodwill", True)


@pytest.mark.parametrize("amount", ["0.0000000001", "ten", "0", "1e400000000", "1e30"])
def test_credit_with_a_bad_amount_is_status_2(cli, alice, amount):
    result = cli("credit", alice, amount, "--reason", "x")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_credit_requires_a_reason(cli, alice):
    assert cli("credit", alice, "1").exit_code == 2


def test_balance_prints_exact_json(cli, alice):
    cli("credit", alice, "0.000123456", "--reason", "tiny")
    assert cli("balance", alice).stdout.strip() == (
        '{"balance": 0.000123456, "balance_nano": 123456, "currency": "USD"}')


def test_provider_and_model_add_publish_them(settings, cli, redis_client):
    result = cli("provider", "add", "local", "--protocol", "openai", "--base-url", "http://127.0.0.1:9000/v1",
                 "--api-key", "sk-upstream")
    assert result.exit_code == 0, result.output
    assert json.loads(redis_client.get("tg:provider:local"))["api_key"] == "sk-upstream"
    result = cli("model", "add", "gpt-test", "--provider", "local", "--upstream-model", "gpt-4o-mini",
                 "--input", "0.15", "--output", "0.6", "--cached-input", "0.075", "--max-output", "4096")
    assert result.exit_code == 0, result.output
    published = json.loads(redis_client.get("tg:model:gpt-test"))
    assert published["routes"][0]["upstream_model"] == "gpt-4o-mini"
    assert (published["max_output"], published["price"]["cached_input"], published["price"]["reasoning"]) == (
        4096, 75_000_000, 600_000_000)


def test_provider_key_can_be_typed_at_a_hidden_prompt(settings, cli):
    result = cli("provider", "add", "local", "--protocol", "anthropic", "--base-url", "https://127.0.0.1",
                 input="sk-typed\n")
    assert result.exit_code == 0, result.output
    assert "sk-typed" not in result.output


def test_model_for_an_unknown_provider_is_status_2(cli):
    result = cli("model", "add", "m", "--provider", "nope", "--input", "1", "--output", "2")
    assert result.exit_code == 2
    assert "no provider named 'nope'" in result.stderr


def test_demo_prints_the_same_key_every_run(settings, cli):
    first, second = cli("demo"), cli("demo")
    assert first.exit_code == 0, first.output
    assert first.stdout.strip().splitlines()[-1] == second.stdout.strip().splitlines()[-1] == demo.demo_key(settings)


def test_demo_never_duplicates_anything(settings, cli):
    cli("demo")
    cli("demo")
    with db.session_scope(settings) as session:
        counted = [session.scalar(select(func.count()).select_from(table))
                   for table in (Account, ApiKey, Provider, Model, Route, PriceVersion, Alias, LedgerTransaction)]
    assert counted == [1, 1, 2, 4, 4, 4, 5, 1]


def test_demo_credit_and_key_are_live(settings, cli, redis_client):
    plaintext = cli("demo").stdout.strip().splitlines()[-1]
    lookup = redis_client.hgetall(redis_keys.apikey(keys.hash_key(plaintext)))
    account = redis_keys.account(int(lookup["shard"]), int(lookup["acct"]))
    assert redis_client.hget(account, "bal") == "100000000000"
    assert redis_client.smembers("tg:models") == {"sandbox-chat", "sandbox-reasoner", "sandbox-claude", "sandbox-embed",
                                                  "claude-opus-4-8", "claude-sonnet-4-6", "claude-haiku-4-5",
                                                  "gpt-5.5", "gpt-4o"}


def test_demo_follows_a_new_base_url(settings, cli):
    cli("demo")
    with db.session_scope(settings) as session:
        demo.ensure_demo(session, settings, "http://127.0.0.1:9999")
    with db.session_scope(settings) as session:
        urls = set(session.scalars(select(Provider.base_url)))
    assert urls == {"http://127.0.0.1:9999/sandbox/openai/v1", "http://127.0.0.1:9999/sandbox/anthropic"}


def test_db_upgrade_is_idempotent(cli):
    result = cli("db", "upgrade")
    assert (result.exit_code, result.stdout.strip()) == (0, "database schema is up to date")


def test_publish_restores_a_flushed_redis(settings, cli, redis_client, alice):
    plaintext = cli("key", "create", alice).stdout.strip().splitlines()[-1]
    cli("credit", alice, "5", "--reason", "x")
    redis_client.flushall()
    assert cli("publish").exit_code == 0
    assert redis_client.hget(redis_keys.apikey(keys.hash_key(plaintext)), "status") == "active"
    assert json.loads(cli("balance", alice).stdout)["balance_nano"] == 5_000_000_000


def test_bad_setting_is_status_2(tollgate_env):
    environment = {**tollgate_env, "TOLLGATE_REDIS_SHARDS": "x"}
    result = CliRunner().invoke(main, ["balance", "x@example.com"], env=environment)
    assert result.exit_code == 2
    assert "TOLLGATE_REDIS_SHARDS must be an integer" in result.stderr


def test_reconcile_prints_each_account_and_exits_0_when_everything_holds(cli, customer):
    result = cli("reconcile")
    assert result.exit_code == 0
    [line] = result.stdout.splitlines()
    assert line.startswith("ok    ") and "alice@example.com" in line
    assert line.endswith("drift $0.00 (0 records not drained yet)")
    assert result.stderr.strip() == ("1 accounts, 0 with drift, 0 keys with drift, 0 broken invariants, "
                                     "0 quarantined records; overage $0.00")


def test_reconcile_prints_a_broken_invariant_and_exits_1(settings, cli, redis_client, customer):
    name = redis_keys.key_state(customer.shard(settings), customer.key.id)
    redis_client.hset(name, "held", -7)
    result = cli("reconcile")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:] == [
        f"BROKEN negative_held: held below zero: redis {name} held is -$0.000000007 (bound $0.00)"]
    assert "1 broken invariants" in result.stderr
