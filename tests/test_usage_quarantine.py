"""The usage quarantine: a record the worker cannot use is kept aside with its reason, on its own,
and never holds up the records next to it in its stream entry."""
import json
import logging
import time
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.config import Config
from helpers import COST, drain_all, packed_record, reconcile_report, usage_entry, usage_record
from sqlalchemy import create_engine, inspect, select, text

from control_plane import db
from control_plane import settings as settings_module
from control_plane.billing.journal_replay import JournalReplay
from control_plane.billing.usage_drain import GROUP
from control_plane.hot import redis_keys, republish
from control_plane.models import Account, Usage, UsageQuarantine

TEN_USD = 10_000_000_000


@pytest.fixture
def tollgate_env(tollgate_env):
    """One shard, so that every customer's records share one stream."""
    return {**tollgate_env, "TOLLGATE_REDIS_SHARDS": "1"}


@pytest.fixture
def alice(make_customer):
    return make_customer("alice@example.com")


@pytest.fixture
def bob(make_customer):
    return make_customer("bob@example.com")


STREAM = redis_keys.usage_stream(0)


def settle(redis_client, records, debits) -> str:
    """What the settle script does with a batch: one stream entry with the packed records (see
    helpers.usage_entry), one per line, and each (customer, cost) debited from its balance and
    added to its key's spend."""
    entry_id = redis_client.xadd(STREAM, usage_entry(*records))
    for customer, cost in debits:
        redis_client.hincrby(redis_keys.account(0, customer.account.id), "bal", -cost)
        redis_client.hincrby(redis_keys.key_state(0, customer.key.id), "spent", cost)
    return entry_id


def quarantined(settings) -> list[UsageQuarantine]:
    with db.session_scope(settings) as session:
        return list(session.scalars(select(UsageQuarantine).order_by(UsageQuarantine.id)))


def usage_costs(settings) -> dict[str, int]:
    with db.session_scope(settings) as session:
        return dict(session.execute(select(Usage.request_id, Usage.cost_nano)).all())


def sql_balance(settings, customer) -> int:
    with db.session_scope(settings) as session:
        return session.get(Account, customer.account.id).balance_nano


@pytest.fixture
def poisoned_entry(redis_client, alice, bob, price_version):
    """Alice's valid record, then one of hers with a fractional output count (charged 777 nano),
    then Bob's valid record: one settlement batch, as the hot path packs it."""
    bad = usage_record(alice, price_version, "req-alice-bad", out="12.5", cost="777")
    return settle(redis_client,
                  [usage_record(alice, price_version, "req-alice"), bad,
                   usage_record(bob, price_version, "req-bob")],
                  [(alice, COST + 777), (bob, COST)])


def test_a_malformed_record_between_two_customers_records_both_of_theirs_exactly(
        settings, drain, poisoned_entry, alice, bob):
    assert drain_all(drain) == 2
    assert usage_costs(settings) == {"req-alice": 525_000, "req-bob": 525_000}
    assert sql_balance(settings, alice) == sql_balance(settings, bob) == TEN_USD - 525_000


def test_a_malformed_record_is_quarantined_with_its_reason_and_what_could_be_read(
        settings, drain, poisoned_entry, alice):
    drain_all(drain)
    [row] = quarantined(settings)
    assert (row.stream, row.entry_id, row.line) == (STREAM, poisoned_entry, 2)
    assert row.reason == "out: not an integer from 0 to 100000000"
    assert (row.request_id, row.account_id, row.key_id, row.cost_nano) == (
        "req-alice-bad", alice.account.id, alice.key.id, 777)
    assert row.record.split("\t")[:3] == ["req-alice-bad", "1700000000123", str(alice.account.id)]


def test_balances_republished_after_redis_lost_its_data_keep_the_quarantined_charge(
        settings, drain, cli, redis_client, poisoned_entry, alice, bob):
    drain_all(drain)
    redis_client.flushall()
    with db.session_scope(settings) as session:
        republish.publish_all(session, settings)
    assert int(redis_client.hget(redis_keys.account(0, alice.account.id), "bal")) == TEN_USD - 525_000 - 777
    assert int(redis_client.hget(redis_keys.key_state(0, alice.key.id), "spent")) == 525_000 + 777
    _status, report = reconcile_report(cli)
    assert {row["email"]: row["drift_nano"] for row in report["accounts"]} == {
        "alice@example.com": 0, "bob@example.com": 0}


def test_an_entry_with_a_quarantined_record_is_acknowledged_and_deleted(
        settings, drain, redis_client, poisoned_entry):
    drain_all(drain)
    assert redis_client.xlen(STREAM) == 0
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0


def test_reconcile_after_a_quarantine_finds_no_drift_and_exits_1_naming_it(
        settings, drain, cli, poisoned_entry, alice, bob):
    drain_all(drain)
    status, report = reconcile_report(cli)
    assert status == 1 and report["ok"] is False
    drifts = {row["email"]: (row["drift_nano"], row["quarantined_records"], row["quarantined_nano"])
              for row in report["accounts"]}
    assert drifts == {"alice@example.com": (0, 1, 777), "bob@example.com": (0, 0, 0)}
    assert report["violations"] == []
    assert [(item["entry_id"], item["line"], item["request_id"], item["reason"])
            for item in report["quarantined"]] == [
        (poisoned_entry, 2, "req-alice-bad", "out: not an integer from 0 to 100000000")]


def test_reconcile_counts_a_record_still_in_the_stream_once(settings, drain, cli, redis_client, alice,
                                                            price_version):
    """Taken between the worker's commit and its XDEL, the snapshot still holds the record the
    worker has quarantined meanwhile: it is expected once, among the undrained."""
    settle(redis_client, [usage_record(alice, price_version, "req-x", key="999999")], [(alice, COST)])
    entries = drain.read(block_ms=1)
    drain.record(entries)
    redis_client.xadd(STREAM, entries[0].fields)  # as if the XDEL had not happened yet
    _status, report = reconcile_report(cli)
    [row] = report["accounts"]
    assert (row["drift_nano"], row["undrained_records"], row["quarantined_records"], row["quarantined_nano"]) == (
        0, 1, 1, 0)


def test_a_redelivered_entry_quarantines_nothing_twice(settings, drain, poisoned_entry):
    entries = drain.read(block_ms=1)
    assert drain.record(entries) == 2
    assert drain.record(entries) == 0  # e.g. the worker died after COMMIT, before XACK
    assert len(quarantined(settings)) == 1
    assert len(usage_costs(settings)) == 2


def test_a_record_for_a_key_of_another_account_is_quarantined(settings, drain, redis_client, alice, bob,
                                                              price_version):
    settle(redis_client, [usage_record(alice, price_version, "req-x", key=str(bob.key.id))], [])
    assert drain_all(drain) == 0
    [row] = quarantined(settings)
    assert row.reason == f"key {bob.key.id} is not a key of account {alice.account.id}"


def test_a_record_of_an_unknown_price_version_is_quarantined(settings, drain, redis_client, alice, price_version):
    settle(redis_client, [usage_record(alice, price_version, "req-x", pv=str(price_version.id + 100))], [])
    assert drain_all(drain) == 0
    assert [row.reason for row in quarantined(settings)] == [f"unknown price version {price_version.id + 100}"]


@pytest.mark.parametrize("overrides, reason", [
    ({"cost": str(2**53 + 1)}, "cost: not an integer from 0 to 9007199254740992"),
    ({"hold": "-1"}, "hold: not an integer from 0 to 9007199254740992"),
    ({"in": "100000001"}, "in: not an integer from 0 to 100000000"),
    ({"rsn": "1e12"}, "rsn: not an integer from 0 to 100000000"),
    ({"basis": "guessed"}, "basis: not one of provider, drained, estimated, invalid, none, refused"),
    ({"ts": "253402300800000"}, "ts: not an integer from 0 to 253402300799999"),
    ({"node": "node\0a"}, "node: contains a NUL character"),
])
def test_a_record_with_a_value_out_of_bounds_is_quarantined(settings, drain, redis_client, alice, price_version,
                                                            overrides, reason):
    settle(redis_client, [usage_record(alice, price_version, "req-x", **overrides)], [])
    assert drain_all(drain) == 0
    assert [row.reason for row in quarantined(settings)] == [reason]


def test_a_line_of_the_wrong_value_count_is_quarantined_with_nothing_read(settings, drain, redis_client, alice,
                                                                          price_version):
    settle(redis_client, [usage_record(alice, price_version, "req-ok"), "req-x\t17\tjunk"], [])
    assert drain_all(drain) == 1
    [row] = quarantined(settings)
    assert (row.line, row.reason) == (2, "packed record has 3 values, expected 32 (or 30 or 24 or 22 of the older layouts)")
    assert (row.request_id, row.account_id, row.key_id, row.cost_nano) == (None, None, None, None)


def test_a_quarantined_record_is_kept_cut_to_1000_characters(settings, drain, redis_client, alice):
    settle(redis_client, ["x" * 5000], [])
    drain_all(drain)
    assert quarantined(settings)[0].record == "x" * 1000


def test_a_quarantined_record_keeps_its_nul_characters_as_backslash_zero(settings, drain, redis_client, alice):
    settle(redis_client, ["bad\0record"], [])
    drain_all(drain)
    assert quarantined(settings)[0].record == "bad\\0record"


def test_a_quarantine_is_logged_without_the_record_text(settings, drain, redis_client, alice, price_version,
                                                        caplog):
    entry_id = settle(redis_client, [usage_record(alice, price_version, "req-x", model="secret-model",
                                                  cost="1.5")], [])
    with caplog.at_level(logging.ERROR):
        drain_all(drain)
    assert [record.getMessage() for record in caplog.records] == [
        f"usage record 1 of entry {entry_id} on {STREAM} quarantined: cost: not an integer from 0 to 9007199254740992"]


def test_quarantine_list_shows_each_record_with_its_reason(settings, drain, cli, poisoned_entry, alice):
    drain_all(drain)
    result = cli("quarantine", "list")
    assert result.exit_code == 0
    [line] = result.stdout.splitlines()
    assert line.endswith(f" {STREAM} {poisoned_entry} line 2: out: not an integer from 0 to 100000000 "
                         f"(request req-alice-bad, account {alice.account.id}, key {alice.key.id}, "
                         f"cost $0.000000777)")
    assert result.stderr.strip() == "1 quarantined records"


def test_quarantine_list_json_carries_the_packed_record(settings, drain, cli, poisoned_entry, alice):
    drain_all(drain)
    [item] = json.loads(cli("quarantine", "list", "--json").stdout)
    assert {name: item[name] for name in ("stream", "entry_id", "line", "request_id", "account_id", "cost_nano")} == {
        "stream": STREAM, "entry_id": poisoned_entry, "line": 2, "request_id": "req-alice-bad",
        "account_id": alice.account.id, "cost_nano": 777}
    assert item["record"].startswith("req-alice-bad\t")


def test_a_journal_line_that_does_not_parse_is_skipped_and_the_others_replayed(settings, redis_client, alice,
                                                                              price_version, caplog):
    settings.journal_dir.mkdir(parents=True)
    minute_ago = str(int(time.time() * 1000) - 60_000)
    good = packed_record(usage_record(alice, price_version, "req-journal", ts=minute_ago))
    (settings.journal_dir / "node-a-1-2026120100.tsv").write_text(f"0\tbatch-1\t{good}\n0\tbatch-1\tjunk\n")
    with caplog.at_level(logging.ERROR):
        assert JournalReplay(settings).run_once() == 1
    assert [fields for _entry_id, fields in redis_client.xrange(STREAM)] == [usage_entry(good)]
    assert redis_client.hget(redis_keys.account(0, alice.account.id), "bal") == str(TEN_USD - COST)
    assert [record.getMessage() for record in caplog.records] == [
        "a usage journal line does not parse (packed record has 1 values, expected 32 (or 30 or 24 or 22 of the older "
        "layouts)); not replayed"]


def make_admin(cli, email="admin@example.com") -> str:
    cli("admin", "create", email)
    return cli("admin", "key", "create", email).stdout.strip().splitlines()[-1]


def test_admin_api_pages_the_quarantine_newest_first(settings, drain, client, cli, redis_client):
    for n in range(3):
        settle(redis_client, [f"bad-{n}"], [])
    drain_all(drain)
    headers = {"Authorization": f"Bearer {make_admin(cli)}"}
    first = client.get("/api/admin/v1/quarantine?limit=2", headers=headers).json
    assert [item["record"] for item in first["data"]] == ["bad-2", "bad-1"] and first["has_more"] is True
    rest = client.get(f"/api/admin/v1/quarantine?limit=2&before={first['next_before']}", headers=headers).json
    assert [item["record"] for item in rest["data"]] == ["bad-0"] and rest["has_more"] is False


def test_admin_quarantine_is_refused_to_customer_keys(client, alice):
    response = client.get("/api/admin/v1/quarantine", headers={"Authorization": f"Bearer {alice.plaintext}"})
    assert (response.status_code, response.json["error"]["code"]) == (401, "admin_key_required")


def test_revision_0004_adds_holds_and_the_quarantine_and_takes_them_away(tmp_path, empty_database):
    config = Config(str(db.ALEMBIC_INI))
    config.attributes["settings"] = settings_module.load(
        {"TOLLGATE_HOME": str(tmp_path), "TOLLGATE_DATABASE_URL": empty_database})
    engine = create_engine(empty_database)

    def schema():
        inspector = inspect(engine)
        return set(inspector.get_table_names()), {column["name"] for column in inspector.get_columns("usage")}

    def usage_row():
        with engine.connect() as connection:
            return connection.execute(text("SELECT * FROM usage")).mappings().one()

    try:
        command.upgrade(config, "0003")
        moment = datetime(2026, 1, 1, tzinfo=UTC)
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO accounts (id, email, is_admin, status, balance_nano, created_at) "
                                    "VALUES (1, 'a@example.com', :no, 'active', 0, :at)"), {"no": False, "at": moment})
            connection.execute(text("INSERT INTO api_keys (id, account_id, name, key_hash, prefix, status, created_at) "
                                    "VALUES (1, 1, '', 'h', 'p', 'active', :at)"), {"at": moment})
            connection.execute(text(
                "INSERT INTO usage (request_id, account_id, key_id, model, upstream_model, provider, endpoint, stream, "
                "status, billing_basis, input_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, "
                "output_tokens, reasoning_tokens, cost_nano, node, created_at) VALUES ('req-1', 1, 1, 'm', '', '', '', "
                ":no, 200, 'provider', 0, 0, 0, 0, 0, 0, 4321, '', :at)"), {"no": False, "at": moment})
        command.upgrade(config, "head")
        tables, columns = schema()
        assert "usage_quarantine" in tables and {"hold_nano", "overage_nano"} <= columns
        row = usage_row()
        assert (row["cost_nano"], row["hold_nano"], row["overage_nano"]) == (4321, 4321, 0)
        command.downgrade(config, "0003")
        tables, columns = schema()
        assert "usage_quarantine" not in tables and not {"hold_nano", "overage_nano"} & columns
        assert (usage_row()["request_id"], usage_row()["cost_nano"]) == ("req-1", 4321)
    finally:
        engine.dispose()
