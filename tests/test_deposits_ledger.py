"""Deposits into the ledger: exactly once, the minimum deposit, the volume bonus, exact units."""
import threading
from decimal import Decimal

import pytest
from helpers import redis_balance, sql_balance
from sqlalchemy import func, select

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import accounts
from control_plane.billing import ledger
from control_plane.deposits import ledger as deposits
from control_plane.deposits.tokens import base_units_to_nano, token_for
from control_plane.errors import ServiceError
from control_plane.hot import credits
from control_plane.models import Deposit, LedgerTransaction

TRON_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
BSC_USDT = "0x55d398326f99059fF775485246999027B3197955"
POLYGON_USDT = "0xc2132D05D31c914a87C6611C10748AEb04B58e8F"
USDT6 = 1_000_000  # base units of 1 USDT with 6 decimals


@pytest.fixture
def account_id(settings):
    with db.session_scope(settings) as session:
        return accounts.create_account(session, "payer@example.com").id


def _deposit(settings, account_id, amount, tx="aa01", log_index=0, chain="tron", contract=TRON_USDT,
             status="confirmed") -> int:
    with db.session_scope(settings) as session:
        return deposits.record_deposit(
            session, chain=chain, tx_hash=tx, log_index=log_index, account_id=account_id,
            token_contract=contract, amount=amount, block_number=100, block_hash="b" * 64, status=status,
        ).id


def _kinds(settings) -> list[tuple[str, str, int]]:
    with db.session_scope(settings) as session:
        rows = session.scalars(select(LedgerTransaction).order_by(LedgerTransaction.id)).all()
        return [(row.kind, row.idempotency_key, ledger.account_balance(session, row.account_id)) for row in rows]


def test_usdt_decimals_per_chain_convert_exactly():
    assert base_units_to_nano(12_345_678, token_for("tron", TRON_USDT).decimals) == 12_345_678_000
    assert base_units_to_nano(12_345_678, token_for("polygon", POLYGON_USDT.lower()).decimals) == 12_345_678_000
    assert base_units_to_nano(12_345_678_901_234_567_891, token_for("bsc", BSC_USDT).decimals) == 12_345_678_901


def test_18_decimal_sub_nano_dust_is_truncated_never_rounded_up():
    assert base_units_to_nano(10**18 + 999_999_999, 18) == 10**9
    assert base_units_to_nano(999_999_999, 18) == 0


def test_token_is_matched_by_contract_never_by_symbol():
    with pytest.raises(ServiceError, match="not an accepted token"):
        token_for("tron", "TXYZfakeUSDTcontract000000000000000")
    with pytest.raises(ServiceError, match="not an accepted token"):
        token_for("bsc", TRON_USDT)


def test_deposit_is_credited_under_its_idempotency_key_and_published(settings, redis_client, account_id):
    deposit_id = _deposit(settings, account_id, 25 * USDT6, tx="0xABCDEF", log_index=3)
    ids = deposits.credit_and_publish(settings, deposit_id)
    assert len(ids) == 1
    with db.session_scope(settings) as session:
        transaction = session.get(LedgerTransaction, ids[0])
        assert (transaction.kind, transaction.idempotency_key, transaction.published) == \
            ("deposit", "deposit:tron:abcdef:3", True)
        deposit = session.get(Deposit, deposit_id)
        assert (deposit.status, deposit.transaction_id, deposit.amount_nano) == ("credited", ids[0], 25 * 10**9)
    assert sql_balance(settings, account_id) == 25 * 10**9
    assert redis_balance(settings, redis_client, account_id) == 25 * 10**9


def test_repeated_credit_posts_once(settings, redis_client, account_id):
    deposit_id = _deposit(settings, account_id, 25 * USDT6)
    first = deposits.credit_and_publish(settings, deposit_id)
    assert deposits.credit_and_publish(settings, deposit_id) == []
    assert deposits.credit_and_publish(settings, deposit_id) == []
    assert len(first) == 1
    assert sql_balance(settings, account_id) == 25 * 10**9
    assert redis_balance(settings, redis_client, account_id) == 25 * 10**9


def test_same_transfer_seen_twice_is_one_deposit_row(settings, account_id):
    first = _deposit(settings, account_id, 25 * USDT6, tx="0xAB", log_index=1, chain="bsc", contract=BSC_USDT)
    second = _deposit(settings, account_id, 25 * USDT6, tx="ab", log_index=1, chain="bsc", contract=BSC_USDT.lower())
    assert first == second
    with db.session_scope(settings) as session:
        assert session.scalar(select(func.count()).select_from(Deposit)) == 1


def test_concurrent_credit_of_one_deposit_posts_once(settings, redis_client, account_id):
    deposit_id = _deposit(settings, account_id, 60 * USDT6)
    results, errors = [], []
    barrier = threading.Barrier(6)

    def run():
        try:
            barrier.wait()
            results.append(deposits.credit_and_publish(settings, deposit_id))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(len(ids) for ids in results) == [0, 0, 0, 0, 0, 2]  # one deposit + one bonus, once
    expected = 60 * 10**9 + 1_200_000_000
    assert sql_balance(settings, account_id) == expected
    assert redis_balance(settings, redis_client, account_id) == expected


def test_unconfirmed_or_orphaned_deposit_is_not_credited(settings, account_id):
    deposit_id = _deposit(settings, account_id, 25 * USDT6, status="seen")
    with pytest.raises(ServiceError, match="not confirmed"):
        deposits.credit_and_publish(settings, deposit_id)
    with db.session_scope(settings) as session:
        session.get(Deposit, deposit_id).status = "orphaned"
    with pytest.raises(ServiceError, match="orphaned"):
        deposits.credit_and_publish(settings, deposit_id)
    assert sql_balance(settings, account_id) == 0


def test_deposit_below_minimum_is_recorded_not_credited(settings, account_id):
    deposit_id = _deposit(settings, account_id, 9_999_999)  # $9.999999 < $10
    assert deposits.credit_and_publish(settings, deposit_id) == []
    with db.session_scope(settings) as session:
        assert session.get(Deposit, deposit_id).status == "below_minimum"
    assert sql_balance(settings, account_id) == 0


def test_below_minimum_deposits_are_credited_once_their_sum_reaches_it(settings, account_id):
    first = _deposit(settings, account_id, 4 * USDT6, tx="01")
    second = _deposit(settings, account_id, 5 * USDT6, tx="02")
    third = _deposit(settings, account_id, 1 * USDT6, tx="03")
    assert deposits.credit_and_publish(settings, first) == []
    assert deposits.credit_and_publish(settings, second) == []
    assert len(deposits.credit_and_publish(settings, third)) == 3
    assert deposits.credit_and_publish(settings, first) == []
    with db.session_scope(settings) as session:
        assert set(session.scalars(select(Deposit.status))) == {"credited"}
        keys = set(session.scalars(select(LedgerTransaction.idempotency_key)))
    assert keys == {"deposit:tron:01:0", "deposit:tron:02:0", "deposit:tron:03:0"}
    assert sql_balance(settings, account_id) == 10 * 10**9


def test_concurrent_below_minimum_deposits_that_reach_it_together_are_credited(settings, account_id):
    ids = [_deposit(settings, account_id, 6 * USDT6, tx=f"0{n}") for n in range(4)]
    barrier = threading.Barrier(len(ids))
    errors = []

    def run(deposit_id):
        try:
            barrier.wait()
            deposits.credit_and_publish(settings, deposit_id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(deposit_id,)) for deposit_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.session_scope(settings) as session:
        assert set(session.scalars(select(Deposit.status))) == {"credited"}
    assert sql_balance(settings, account_id) == 24 * 10**9


def test_bonus_is_a_separate_transaction_at_the_reached_tier(settings, account_id):
    deposit_id = _deposit(settings, account_id, 100 * USDT6, tx="ff")
    deposits.credit_and_publish(settings, deposit_id)
    assert [(kind, key) for kind, key, _b in _kinds(settings)] == [
        ("deposit", "deposit:tron:ff:0"), ("bonus", "bonus:deposit:tron:ff:0")]
    assert sql_balance(settings, account_id) == 105 * 10**9


def test_bonus_math_is_exact_and_rounds_half_up_to_the_nano():
    assert deposits.bonus_nano(49_999_999_999, Decimal(2)) == 1_000_000_000  # 999_999_999.98 -> up
    assert deposits.bonus_nano(25, Decimal(2)) == 1  # 0.5 nano -> 1
    assert deposits.bonus_nano(24, Decimal(2)) == 0  # 0.48 nano -> 0
    assert deposits.bonus_nano(123_456_789_012, Decimal("2.5")) == 3_086_419_725  # .3 -> down
    assert deposits.bonus_nano(10**20, Decimal(5)) == 5 * 10**18


def test_tier_is_the_highest_threshold_reached(settings):
    assert deposits.bonus_percent(settings, 49_999_999_999) == 0
    assert deposits.bonus_percent(settings, 50 * 10**9) == 2
    assert deposits.bonus_percent(settings, 99_999_999_999) == 2
    assert deposits.bonus_percent(settings, 100 * 10**9) == 5


def test_bsc_deposit_with_dust_credits_the_truncated_amount_and_exact_bonus(settings, account_id):
    amount = 50 * 10**18 + 123_456_789_987_654_321  # 50.123456789987654321 USDT
    deposit_id = _deposit(settings, account_id, amount, tx="0x" + "c" * 64, chain="bsc", contract=BSC_USDT)
    deposits.credit_and_publish(settings, deposit_id)
    with db.session_scope(settings) as session:
        deposit = session.get(Deposit, deposit_id)
        assert deposit.amount == amount  # the full base units survive the round trip through SQL
        assert deposit.amount_nano == 50_123_456_789
    # 2 % of 50.123456789 = 1.00246913578 -> 1.002469136 (half-up)
    assert sql_balance(settings, account_id) == 50_123_456_789 + 1_002_469_136


def test_bonus_tiers_setting_is_validated(tollgate_env):
    loaded = settings_module.load({**tollgate_env, "TOLLGATE_TOPUP_BONUS_TIERS": "0:0, 20:1.5"})
    assert loaded.topup_bonus_tiers == ((0, Decimal(0)), (20 * 10**9, Decimal("1.5")))
    for bad in ("10", "10:x", "50:2,10:1", "10:101"):
        with pytest.raises(settings_module.SettingsError, match="TOLLGATE_TOPUP_BONUS_TIERS"):
            settings_module.load({**tollgate_env, "TOLLGATE_TOPUP_BONUS_TIERS": bad})


def test_minimum_deposit_setting(tollgate_env, database_url, redis_url):
    loaded = settings_module.load({**tollgate_env, "TOLLGATE_MIN_DEPOSIT_USD": "1"})
    with db.session_scope(loaded) as session:
        account_id = accounts.create_account(session, "small@example.com").id
    deposit_id = _deposit(loaded, account_id, 2 * USDT6)
    assert len(deposits.credit_and_publish(loaded, deposit_id)) == 1


def test_publish_failure_leaves_credit_for_the_worker(settings, redis_client, account_id, monkeypatch):
    import redis as redis_module

    def down(*_args, **_kwargs):
        raise redis_module.ConnectionError("down")

    monkeypatch.setattr(credits, "apply_credit", down)
    deposit_id = _deposit(settings, account_id, 25 * USDT6)
    ids = deposits.credit_and_publish(settings, deposit_id)
    monkeypatch.undo()
    with db.session_scope(settings) as session:
        assert session.get(LedgerTransaction, ids[0]).published is False
        assert credits.apply_unpublished(session, settings) == 1
    assert redis_balance(settings, redis_client, account_id) == 25 * 10**9
