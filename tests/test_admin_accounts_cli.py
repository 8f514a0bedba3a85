"""`tollgate account list|show|suspend|reactivate` and `tollgate credit`'s debits: tables for
people, exact JSON for scripts (money as a decimal and in nano-USD), exit codes 0 (done), 2 (a
mistake: unknown account, missing reason, a debit beyond the balance) and 1 (Redis or the
database unreachable)."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from click.testing import CliRunner
from conftest import _free_port
from helpers import redis_balance, sql_balance
from sqlalchemy import select

from control_plane import db
from control_plane.cli.main import main
from control_plane.hot import redis_keys
from control_plane.models import Account, AuditEntry, utcnow


def as_json(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout, parse_float=Decimal)


def test_list_is_a_table_for_people_and_exact_json_for_scripts(cli, make_customer):
    alice = make_customer("alice@shop.test", "12.345678901")
    make_customer("bob@other.org", None)
    table = cli("account", "list")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "EMAIL", "STATUS", "BALANCE", "KEYS", "CREATED"]
    assert lines[1].split()[1:5] == ["bob@other.org", "active", "$0.00", "1"]
    assert lines[2].split()[1:5] == ["alice@shop.test", "active", "$12.345678901", "1"]
    assert table.stderr.strip() == "2 accounts"
    [item] = as_json(cli("account", "list", "--search", "SHOP", "--json"))
    assert item | {"created_at": ""} == {
        "id": alice.account.id, "email": "alice@shop.test", "status": "active", "is_admin": False,
        "balance": Decimal("12.345678901"), "balance_nano": 12_345_678_901, "active_keys": 1, "created_at": "",
        "deleted_at": None}
    assert [row["email"] for row in as_json(cli("account", "list", "--limit", "1", "--json"))] == ["bob@other.org"]
    assert as_json(cli("account", "list", "--status", "suspended", "--json")) == []


def test_list_refuses_a_bad_status_or_limit(cli):
    assert cli("account", "list", "--status", "gone").exit_code == 2
    assert cli("account", "list", "--limit", "0").exit_code == 2


def test_show_gives_the_balance_status_keys_and_ledger(cli, make_customer):
    alice = make_customer("alice@shop.test", "10")
    assert cli("credit", "alice@shop.test", "2.5", "--reason", "welcome").exit_code == 0
    for argument in ("alice@shop.test", str(alice.account.id), f"#{alice.account.id}"):
        document = as_json(cli("account", "show", argument, "--json"))
        assert (document["email"], document["balance"], document["balance_nano"]) == (
            "alice@shop.test", Decimal("12.5"), 12_500_000_000)
    assert [(key["id"], key["status"]) for key in document["keys"]] == [(alice.key.id, "active")]
    assert [(row["type"], row["amount_nano"], row["description"]) for row in document["transactions"]] == [
        ("adjustment", 2_500_000_000, "welcome"), ("deposit", 10_000_000_000, "Test deposit")]
    text = cli("account", "show", "alice@shop.test")
    assert text.exit_code == 0
    assert "balance  $12.50" in text.stdout and "status   active" in text.stdout
    assert f"{alice.key.prefix}…" in text.stdout and "welcome" in text.stdout


def test_show_of_an_unknown_account_is_status_2(cli):
    result = cli("account", "show", "nobody@shop.test")
    assert result.exit_code == 2 and "no account with email or id 'nobody@shop.test'" in result.stderr
    assert cli("account", "show", "424242").exit_code == 2


def test_suspend_and_reactivate_reach_redis_and_the_audit_log(settings, cli, make_customer, redis_client):
    alice = make_customer("alice@shop.test", "10")
    lookup = redis_keys.apikey(alice.key.key_hash)
    result = cli("account", "suspend", "alice@shop.test", "--reason", "chargeback")
    assert result.exit_code == 0, result.output
    assert "is suspended: its keys are refused within 2 s" in result.stdout
    assert redis_client.hget(lookup, "status") == "suspended"
    assert as_json(cli("account", "show", "alice@shop.test", "--json"))["status"] == "suspended"
    again = cli("account", "suspend", "alice@shop.test", "--reason", "chargeback")
    assert again.exit_code == 0 and "was suspended already" in again.stdout
    result = cli("account", "reactivate", str(alice.account.id))
    assert result.exit_code == 0 and "is active: its keys work again within 2 s" in result.stdout
    assert redis_client.hget(lookup, "status") == "active"
    with db.read_session(settings) as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.entity == "account",
                                                             AuditEntry.entity_id == str(alice.account.id),
                                                             AuditEntry.action == "update")
                                    .order_by(AuditEntry.id)))
    assert [(json.loads(row.after), row.reason, row.actor.startswith("cli ")) for row in rows] == [
        ({"status": "suspended"}, "chargeback", True), ({"status": "active"}, "", True)]


@pytest.mark.parametrize("args", [
    ("account", "suspend", "alice@shop.test"),  # no --reason
    ("account", "suspend", "alice@shop.test", "--reason", "  "),
    ("account", "suspend", "nobody@shop.test", "--reason", "x"),
    ("account", "reactivate", "nobody@shop.test"),
])
def test_a_suspension_mistake_is_status_2_and_changes_nothing(settings, cli, make_customer, args):
    alice = make_customer("alice@shop.test", "10")
    result = cli(*args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    with db.read_session(settings) as session:
        assert session.get(Account, alice.account.id).status == "active"


def test_a_deleted_account_is_not_suspended_or_reactivated(settings, cli, make_customer):
    alice = make_customer("alice@shop.test", "10")
    with db.session_scope(settings) as session:
        owner = session.get(Account, alice.account.id)
        owner.status, owner.deleted_at = "disabled", utcnow()
    for action in ("suspend", "reactivate"):
        result = cli("account", action, "alice@shop.test", "--reason", "x")
        assert result.exit_code == 2 and "was deleted by its owner" in result.stderr


def test_a_debit_beyond_the_live_balance_is_status_2_and_changes_nothing(settings, cli, make_customer, redis_client):
    alice = make_customer("alice@shop.test", "10")
    result = cli("credit", "alice@shop.test", "-10.01", "--reason", "too much")
    assert result.exit_code == 2 and "a balance never goes below zero" in result.stderr
    assert sql_balance(settings, alice.account.id) == redis_balance(settings, redis_client, alice.account.id) == \
        10_000_000_000
    result = cli("credit", "alice@shop.test", "-10", "--reason", "all of it")
    assert result.exit_code == 0 and result.stdout.strip().endswith("balance $0.00")


def test_a_credit_beyond_a_million_dollars_is_status_2(cli, make_customer):
    make_customer("alice@shop.test", "10")
    result = cli("credit", "alice@shop.test", "1000000.01", "--reason", "typo")
    assert result.exit_code == 2 and "One movement is at most $1000000.00" in result.stderr


def test_redis_unreachable_is_status_1(tollgate_env, make_customer):
    make_customer("alice@shop.test", "10")
    environment = {**tollgate_env, "TOLLGATE_REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0"}
    for args in (("account", "suspend", "alice@shop.test", "--reason", "x"),
                 ("credit", "alice@shop.test", "-1", "--reason", "x")):
        result = CliRunner().invoke(main, list(args), env=environment)
        assert result.exit_code == 1 and "Traceback" not in result.output, (args, result.output)


def test_the_database_unreachable_is_status_1(tollgate_env):
    environment = {**tollgate_env, "TOLLGATE_DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{_free_port()}/x"}
    result = CliRunner().invoke(main, ["account", "list"], env=environment)
    assert result.exit_code == 1 and "database error" in result.stderr
