"""The usage drain: synthetic records (docs/internals.md format) into SQL exactly once."""
import logging

import pytest
from helpers import COST, HOLD, TOKENS, drain_all, usage_entry, usage_record
from sqlalchemy import func, select

from control_plane import db
from control_plane.billing.usage_drain import GROUP
from control_plane.hot import redis_keys
from control_plane.hot.usage_records import RECORD_FIELDS
from control_plane.models import Account, LedgerEntry, LedgerTransaction, Usage, UsageQuarantine


@pytest.fixture
def stream(settings, customer):
    return redis_keys.usage_stream(customer.shard(settings))


def count(settings, model) -> int:
    with db.session_scope(settings) as session:
        return session.scalar(select(func.count()).select_from(model))


def test_record_becomes_a_usage_row_with_every_field(settings, drain, stream, redis_client, customer, price_version):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-1")))
    assert drain_all(drain) == 1
    with db.session_scope(settings) as session:
        row = session.scalar(select(Usage))
        assert (row.request_id, row.account_id, row.key_id, row.model, row.upstream_model, row.provider) == (
            "req-1", customer.account.id, customer.key.id, "test-chat", "test-chat-upstream", "test")
        assert (row.endpoint, row.stream, row.status, row.billing_basis, row.node) == (
            "chat.completions", True, 200, "provider", "node-a")
        assert (row.input_tokens, row.cached_input_tokens, row.cache_write_tokens, row.cache_write_1h_tokens,
                row.output_tokens, row.reasoning_tokens) == (1000, 200, 0, 0, 500, 100)
        assert (row.cost_nano, row.hold_nano, row.overage_nano, row.price_version_id, row.latency_ms,
                row.ttfb_ms) == (COST, HOLD, 0, price_version.id, 850, 120)
        assert row.created_at.isoformat() == "2023-11-14T22:13:20.123000+00:00"


def test_usage_is_charged_to_the_wallet_in_a_balanced_transaction(settings, drain, stream, redis_client, customer,
                                                                  price_version):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-1")))
    drain_all(drain)
    with db.session_scope(settings) as session:
        transaction = session.scalar(select(LedgerTransaction).where(LedgerTransaction.kind == "usage"))
        assert transaction.idempotency_key == "usage-batch:req-1"
        assert transaction.published is True
        assert transaction.description == "1 request: test-chat"
        assert sorted(entry.amount for entry in transaction.entries) == [-525_000, 525_000]
        assert session.scalar(select(Usage.transaction_id)) == transaction.id
        assert session.get(Account, customer.account.id).balance_nano == 10_000_000_000 - 525_000


def test_a_batch_charges_each_account_once_for_all_its_requests(settings, drain, redis_client, make_customer,
                                                                price_version):
    """Three customers' requests read in one batch (a free one too): one transaction per charged
    account, of the sum of its rows' costs, which its rows name; the free row names none."""
    alice, bob = make_customer("alice@example.com"), make_customer("bob@example.com", deposit_usd="1")
    carol = make_customer("carol@example.com")
    records = [(alice, usage_record(alice, price_version, "a-1")),
               (bob, usage_record(bob, price_version, "b-1", cost="7", basis="estimated")),
               (alice, usage_record(alice, price_version, "a-2", cost="1", basis="estimated")),
               (carol, usage_record(carol, price_version, "c-1", cost="0", basis="none", pcost="0")),
               (bob, usage_record(bob, price_version, "b-2", model="other-chat", cost="11", basis="estimated"))]
    for owner, record in records:
        redis_client.xadd(redis_keys.usage_stream(owner.shard(settings)), usage_entry(record))
    assert len(drain.read(block_ms=1)) == 5  # one batch
    drain.reread_pending()
    assert drain_all(drain) == 5
    with db.session_scope(settings) as session:
        transactions = {row.account_id: row for row in session.scalars(
            select(LedgerTransaction).where(LedgerTransaction.kind == "usage"))}
        assert set(transactions) == {alice.account.id, bob.account.id}
        of_alice, of_bob = transactions[alice.account.id], transactions[bob.account.id]
        assert (of_alice.idempotency_key, of_alice.description) == ("usage-batch:a-1", "2 requests: test-chat")
        assert (of_bob.idempotency_key, of_bob.description) == (
            "usage-batch:b-1", "2 requests: test-chat 1, other-chat 1")
        assert sorted(entry.amount for entry in of_alice.entries) == [-525_001, 525_001]
        assert sorted(entry.amount for entry in of_bob.entries) == [-18, 18]
        named = dict(session.execute(select(Usage.request_id, Usage.transaction_id)).all())
        assert named == {"a-1": of_alice.id, "a-2": of_alice.id, "b-1": of_bob.id, "b-2": of_bob.id, "c-1": None}
        assert [session.get(Account, customer.account.id).balance_nano for customer in (alice, bob, carol)] == [
            9_999_474_999, 999_999_982, 10_000_000_000]
        assert session.scalar(select(func.sum(LedgerEntry.amount))) == 0


def test_a_batch_whose_charges_to_one_account_pass_the_bound_quarantines_the_rest(
        settings, drain, stream, redis_client, customer, price_version):
    """A record's cost is at most 2^53 nano; 2^62 in one batch's transaction is more than any
    honest batch and what a BIGINT sum keeps room for: the records past it are quarantined."""
    huge = str(2**53)
    batch = [usage_record(customer, price_version, f"req-{i}", cost=huge, hold=huge, basis="estimated")
             for i in range(513)]
    redis_client.xadd(stream, usage_entry(*batch))
    assert drain_all(drain) == 512
    with db.session_scope(settings) as session:
        [transaction] = session.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "usage"))
        assert sorted(entry.amount for entry in transaction.entries) == [-2**62, 2**62]
        [held] = session.scalars(select(UsageQuarantine))
        assert (held.request_id, held.line) == ("req-512", 513)
        assert held.reason == f"the charges of account {customer.account.id} in one batch exceed {2**62} nano"


def test_drained_entries_are_acknowledged_and_deleted(settings, drain, stream, redis_client, customer, price_version):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-1")))
    drain_all(drain)
    assert redis_client.xlen(stream) == 0
    assert redis_client.xpending(stream, GROUP)["pending"] == 0


def test_entry_delivered_twice_is_recorded_once(settings, drain, stream, redis_client, customer, price_version):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-1")))
    entries = drain.read(block_ms=1)
    assert drain.record(entries) == 1
    assert drain.record(entries) == 0  # e.g. the worker died after COMMIT, before XACK
    assert count(settings, Usage) == 1
    assert count(settings, LedgerTransaction) == 2  # the deposit and one usage charge


def test_same_request_id_in_two_entries_is_recorded_once(settings, drain, stream, redis_client, customer,
                                                         price_version):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-1")))
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-1")))
    assert drain_all(drain) == 1
    assert count(settings, Usage) == 1
    assert redis_client.xlen(stream) == 0


def test_nothing_is_acknowledged_when_sql_fails(settings, drain, stream, redis_client, customer, price_version,
                                                monkeypatch):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-1")))
    entries = drain.read(block_ms=1)
    monkeypatch.setattr("control_plane.billing.ledger.post_new", lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        drain.record(entries)
    assert redis_client.xpending(stream, GROUP)["pending"] == 1
    assert count(settings, Usage) == 0


def test_pending_entries_are_read_again_after_a_failure(settings, drain, stream, redis_client, customer,
                                                        price_version):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-1")))
    assert drain.read(block_ms=1)  # delivered, then the batch fails before it is recorded
    drain.reread_pending()
    assert drain_all(drain) == 1


def test_entries_of_a_dead_consumer_are_claimed(settings, drain, stream, redis_client, customer, price_version):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-1")))
    redis_client.xreadgroup(GROUP, "dead-consumer", {stream: ">"}, count=10)
    assert drain.claim_stale() == []  # idle for less than a minute
    redis_client.execute_command("XCLAIM", stream, GROUP, "dead-consumer", 0,
                                 redis_client.xrange(stream)[0][0], "IDLE", 61_000)
    assert drain.record(drain.claim_stale()) == 1
    assert redis_client.xlen(stream) == 0


def test_cost_mismatch_is_logged_and_the_charge_stands(settings, drain, stream, redis_client, customer,
                                                       price_version, caplog):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-odd", cost="999")))
    with caplog.at_level(logging.ERROR):
        drain_all(drain)
    assert [record.getMessage() for record in caplog.records] == [
        f"usage req-odd (provider): charged 999 nano with overage 0, but price version {price_version.id} gives "
        f"525000 against a hold of 600000: a charge of 525000 with overage 0; recorded as charged"]
    assert usage_cost(settings) == 999


def test_a_provider_cost_its_cost_version_does_not_give_is_logged(settings, drain, stream, redis_client, customer,
                                                                  price_version, caplog):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-pcost", pcost="7")))
    with caplog.at_level(logging.ERROR):
        drain_all(drain)
    assert [record.getMessage() for record in caplog.records] == [
        f"usage req-pcost (provider): provider cost 7 nano, but cost version {price_version.id} gives 525000; "
        f"recorded as reported"]
    with db.session_scope(settings) as session:
        assert session.scalar(select(Usage.provider_cost_nano)) == 7


def test_provider_usage_above_the_hold_is_charged_the_hold_and_records_the_overage(
        settings, drain, stream, redis_client, customer, price_version, caplog):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-over", cost="500000",
                                                       hold="500000", over="25000")))
    with caplog.at_level(logging.ERROR):
        drain_all(drain)
    assert caplog.records == []
    with db.session_scope(settings) as session:
        row = session.scalar(select(Usage))
        assert (row.cost_nano, row.hold_nano, row.overage_nano) == (500_000, 500_000, 25_000)
        assert session.get(Account, customer.account.id).balance_nano == 10_000_000_000 - 500_000


def test_provider_usage_above_the_hold_with_a_wrong_overage_is_logged(settings, drain, stream, redis_client,
                                                                     customer, price_version, caplog):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-over", cost="500000",
                                                       hold="500000", over="0")))
    with caplog.at_level(logging.ERROR):
        drain_all(drain)
    assert "a charge of 500000 with overage 25000; recorded as charged" in caplog.text


def test_estimate_capped_below_its_price_is_not_an_error(settings, drain, stream, redis_client, customer,
                                                         price_version, caplog):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-est", cost="1000",
                                                       basis="estimated")))
    with caplog.at_level(logging.ERROR):
        drain_all(drain)
    assert caplog.records == []


def test_estimate_above_its_hold_is_logged(settings, drain, stream, redis_client, customer, price_version, caplog):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-est", cost="600001",
                                                       basis="estimated")))
    with caplog.at_level(logging.ERROR):
        drain_all(drain)
    assert "but an estimate is at most its hold, 600000, without overage" in caplog.text
    assert usage_cost(settings) == 600_001


def test_invalid_provider_usage_is_charged_its_hold_with_the_clamped_figures(
        settings, drain, stream, redis_client, customer, price_version, caplog):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-inv", basis="invalid",
                                                       pcost="0", out="100000000", cost="600000")))
    with caplog.at_level(logging.ERROR):
        drain_all(drain)
    assert caplog.records == []
    with db.session_scope(settings) as session:
        row = session.scalar(select(Usage))
        assert (row.billing_basis, row.output_tokens, row.cost_nano, row.hold_nano) == (
            "invalid", 100_000_000, 600_000, 600_000)


def test_invalid_provider_usage_charged_other_than_its_hold_is_logged(settings, drain, stream, redis_client,
                                                                      customer, price_version, caplog):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-inv", basis="invalid", cost="1")))
    with caplog.at_level(logging.ERROR):
        drain_all(drain)
    assert "but invalid provider usage is charged its hold, 600000" in caplog.text


def test_a_charge_without_usage_is_logged(settings, drain, stream, redis_client, customer, price_version, caplog):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-none", basis="none", cost="5")))
    with caplog.at_level(logging.ERROR):
        drain_all(drain)
    assert "but a request without usage is charged nothing" in caplog.text


def usage_cost(settings) -> int:
    with db.session_scope(settings) as session:
        return session.scalar(select(Usage.cost_nano))


def test_free_request_is_recorded_without_a_ledger_transaction(settings, drain, stream, redis_client, customer,
                                                               price_version):
    zero = {field: "0" for field in TOKENS}
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-free", cost="0", status="502",
                                                       basis="none", **zero)))
    assert drain_all(drain) == 1
    with db.session_scope(settings) as session:
        assert session.scalar(select(Usage.transaction_id)) is None
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 2  # the deposit only


def test_log_lines_carry_no_record_text(settings, drain, stream, redis_client, customer, price_version, caplog):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-odd", cost="1",
                                                       model="secret-model-name")))
    with caplog.at_level(logging.DEBUG):
        drain_all(drain)
    assert "secret-model-name" not in caplog.text
    assert all("\n" not in record.getMessage() for record in caplog.records)


def test_an_entry_of_a_settlement_batch_records_each_of_its_records(settings, drain, stream, redis_client, customer,
                                                                     price_version):
    batch = [usage_record(customer, price_version, f"req-{i}") for i in range(3)]
    redis_client.xadd(stream, usage_entry(*batch))
    assert drain_all(drain) == 3
    assert count(settings, Usage) == 3
    assert redis_client.xlen(stream) == 0


def test_an_entry_with_one_field_per_value_is_recorded_as_its_one_record(settings, drain, stream, redis_client,
                                                                       customer, price_version):
    redis_client.xadd(stream, usage_record(customer, price_version, "req-1"))
    assert drain_all(drain) == 1
    with db.session_scope(settings) as session:
        row = session.scalar(select(Usage))
        assert (row.request_id, row.output_tokens, row.cost_nano, row.hold_nano) == ("req-1", 500, COST, HOLD)


def test_a_record_of_22_values_packed_before_hold_and_over_is_recorded_with_its_cost_as_hold(
        settings, drain, stream, redis_client, customer, price_version):
    legacy = "\t".join(usage_record(customer, price_version, "req-old")[name] for name in RECORD_FIELDS[:22])
    redis_client.xadd(stream, usage_entry(legacy))
    assert drain_all(drain) == 1
    with db.session_scope(settings) as session:
        row = session.scalar(select(Usage))
        assert (row.request_id, row.cost_nano, row.hold_nano, row.overage_nano) == ("req-old", COST, COST, 0)
