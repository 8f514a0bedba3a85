"""The TRON watcher against a fake TRON node + TronGrid (tests/fake_tron.py): credited once,
only when solidified with SUCCESS, by contract address, exact units, resumable, rate limits survived."""
import logging

import pytest
from bip_utils import Bip32Secp256k1
from fake_tron import USDT, Log, address, serve
from helpers import redis_balance, sql_balance
from sqlalchemy import select

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import accounts
from control_plane.deposits import addresses, cursors, tron_watcher
from control_plane.deposits.ledger import record_deposit
from control_plane.deposits.trongrid import TronUnavailable
from control_plane.models import Deposit, LedgerTransaction

USDT6 = 1_000_000  # base units of 1 USDT (6 decimals)
FAKE_USDT = address(0x11)  # another TRC20 contract calling itself USDT
STRANGER = address(0x22)  # an address that is not one of ours
STEP = tron_watcher.STEP_BLOCKS


class Crash(Exception):
    pass


@pytest.fixture
def fake():
    node, server = serve()
    yield node
    server.shutdown()
    server.server_close()


@pytest.fixture
def tron_env(tollgate_env, fake):
    xpub = Bip32Secp256k1.FromSeed(bytes(range(32))).PublicKey().ToExtended()  # any watch-only xpub
    return {**tollgate_env, "TOLLGATE_XPUB_TRON": xpub, "TOLLGATE_TRON_URL": fake.url,
            "TOLLGATE_TRON_START_BLOCK": "90"}


@pytest.fixture
def tron_settings(tron_env):
    return settings_module.load(tron_env)


def _customer(settings, email="payer@example.com") -> tuple[int, str]:
    """(account id, its TRON deposit address)."""
    with db.session_scope(settings) as session:
        account_id = accounts.create_account(session, email).id
        return account_id, addresses.address_for(session, settings, account_id, "tron").address


def _deposits(settings) -> list[tuple[str, int, int, str]]:
    with db.session_scope(settings) as session:
        rows = session.scalars(select(Deposit).order_by(Deposit.tx_hash, Deposit.log_index)).all()
        return [(row.tx_hash, row.log_index, row.amount_nano, row.status) for row in rows]


def _cursor(settings) -> int | None:
    with db.session_scope(settings) as session:
        return cursors.next_block(session, "tron")


def test_transfer_is_credited_once_solidified_never_before(tron_settings, fake, redis_client):
    account_id, deposit_address = _customer(tron_settings)
    fake.chain(head=120, solid=100)
    txid = fake.send(110, Log(deposit_address, 60 * USDT6))

    report = tron_watcher.scan(tron_settings)
    assert (report.from_block, report.to_block, report.found, report.credited) == (90, 100, 0, 0)
    assert sql_balance(tron_settings, account_id) == 0

    fake.chain(head=140, solid=125)
    report = tron_watcher.scan(tron_settings)
    assert (report.from_block, report.to_block, report.found, report.credited) == (101, 125, 1, 1)
    assert _deposits(tron_settings) == [(txid, 0, 60 * 10**9, "credited")]
    expected = 60 * 10**9 + 1_200_000_000  # the 2 % tier's bonus, a transaction of its own
    assert sql_balance(tron_settings, account_id) == expected
    assert redis_balance(tron_settings, redis_client, account_id) == expected
    with db.session_scope(tron_settings) as session:
        assert [(row.kind, row.idempotency_key) for row in session.scalars(
            select(LedgerTransaction).where(LedgerTransaction.account_id == account_id)
            .order_by(LedgerTransaction.id))] == [("deposit", f"deposit:tron:{txid}:0"),
                                                  ("bonus", f"bonus:deposit:tron:{txid}:0")]

    report = tron_watcher.scan(tron_settings, from_block=90)
    assert (report.found, report.credited) == (0, 0)
    assert sql_balance(tron_settings, account_id) == expected
    assert _cursor(tron_settings) == 126


@pytest.mark.parametrize("result", ["REVERT", "OUT_OF_ENERGY"])
def test_failed_receipt_is_never_credited(tron_settings, fake, result):
    account_id, deposit_address = _customer(tron_settings)
    fake.chain(head=120, solid=110)
    fake.send(100, Log(deposit_address, 50 * USDT6), result=result)  # listed, event logs and all
    report = tron_watcher.scan(tron_settings)
    assert (report.found, report.credited) == (0, 0)
    assert _deposits(tron_settings) == []
    assert sql_balance(tron_settings, account_id) == 0


def test_transfer_of_another_contract_named_usdt_is_ignored(tron_settings, fake):
    account_id, deposit_address = _customer(tron_settings)
    fake.chain(head=120, solid=110)
    fake.send(100, Log(deposit_address, 500 * USDT6, contract=FAKE_USDT, symbol="USDT"))
    mixed = fake.send(101, Log(deposit_address, 900 * USDT6, contract=FAKE_USDT, symbol="USDT"),
                      Log(deposit_address, 20 * USDT6), Log(STRANGER, 30 * USDT6))
    report = tron_watcher.scan(tron_settings)
    assert (report.found, report.credited) == (1, 1)
    assert _deposits(tron_settings) == [(mixed, 1, 20 * 10**9, "credited")]
    assert sql_balance(tron_settings, account_id) == 20 * 10**9


def test_the_configured_contract_is_the_one_accepted(tron_env, fake):
    test_usdt = address(0x33)  # e.g. a testnet USDT
    settings = settings_module.load({**tron_env, "TOLLGATE_TRON_USDT_CONTRACT": test_usdt})
    account_id, deposit_address = _customer(settings)
    fake.chain(head=120, solid=110)
    fake.send(100, Log(deposit_address, 40 * USDT6))  # the mainnet contract: not accepted here
    txid = fake.send(101, Log(deposit_address, 15 * USDT6, contract=test_usdt))
    assert tron_watcher.scan(settings).credited == 1
    assert _deposits(settings) == [(txid, 0, 15 * 10**9, "credited")]
    assert sql_balance(settings, account_id) == 15 * 10**9


def test_two_transfers_in_one_transaction_are_two_exact_deposits(tron_settings, fake):
    first_id, first_address = _customer(tron_settings, "first@example.com")
    second_id, second_address = _customer(tron_settings, "second@example.com")
    fake.chain(head=120, solid=110)
    txid = fake.send(100, Log(first_address, 12_345_678), Log(first_address, 10_654_323),
                     Log(second_address, 10_000_001))
    report = tron_watcher.scan(tron_settings)
    assert (report.found, report.credited) == (3, 3)
    assert _deposits(tron_settings) == [(txid, 0, 12_345_678_000, "credited"), (txid, 1, 10_654_323_000, "credited"),
                                        (txid, 2, 10_000_001_000, "credited")]
    assert sql_balance(tron_settings, first_id) == 23_000_001_000
    assert sql_balance(tron_settings, second_id) == 10_000_001_000
    with db.session_scope(tron_settings) as session:
        assert session.scalar(select(Deposit.token_contract).limit(1)) == USDT
        assert session.scalar(select(Deposit.amount).where(Deposit.log_index == 0)) == 12_345_678
        assert set(session.execute(select(Deposit.block_number, Deposit.block_hash))) == {(100, fake.block_id(100))}


def test_every_page_is_read_through_the_fingerprint(tron_env, fake):
    settings = settings_module.load({**tron_env, "TOLLGATE_TRON_PAGE_SIZE": "2"})
    account_id, deposit_address = _customer(settings)
    fake.chain(head=200, solid=150)
    for block in range(100, 105):
        fake.send(block, Log(deposit_address, 10 * USDT6 + block))
    report = tron_watcher.scan(settings)
    assert (report.found, report.credited) == (5, 5)
    assert len(fake.paths("/v1/accounts/")) == 3
    assert sql_balance(settings, account_id) == sum(10 * 10**9 + block * 1000 for block in range(100, 105))


def test_restart_mid_scan_then_rescan_credit_nothing_twice(tron_settings, fake):
    account_id, deposit_address = _customer(tron_settings)
    fake.chain(head=3 * STEP, solid=3 * STEP - 10)
    for block in (100, STEP + 100, 2 * STEP + 100):
        fake.send(block, Log(deposit_address, 10 * USDT6))
    covered = []

    def crash_after_first_step(done, total):
        covered.append((done, total))
        raise Crash

    with pytest.raises(Crash):
        tron_watcher.scan(tron_settings, progress=crash_after_first_step)
    assert covered == [(STEP, 3 * STEP - 10 - 90 + 1)]
    assert _cursor(tron_settings) == 90 + STEP
    assert sql_balance(tron_settings, account_id) == 10 * 10**9

    steps = []
    report = tron_watcher.scan(tron_settings, progress=lambda done, total: steps.append((done, total)))
    assert (report.from_block, report.to_block, report.found, report.credited) == (90 + STEP, 3 * STEP - 10, 2, 2)
    assert steps[-1][0] == steps[-1][1]
    report = tron_watcher.scan(tron_settings, from_block=0)
    assert (report.found, report.credited) == (0, 0)
    assert _cursor(tron_settings) == 3 * STEP - 9
    assert sql_balance(tron_settings, account_id) == 30 * 10**9


def test_deposit_recorded_before_a_crash_is_credited_by_the_next_scan(tron_settings, fake):
    account_id, deposit_address = _customer(tron_settings)
    with db.session_scope(tron_settings) as session:
        record_deposit(session, chain="tron", tx_hash="ab" * 32, log_index=0, account_id=account_id,
                       token_contract=USDT, amount=15 * USDT6, block_number=95, block_hash="cd" * 32,
                       status="confirmed")
    fake.chain(head=120, solid=110)
    report = tron_watcher.scan(tron_settings)
    assert (report.found, report.credited) == (0, 1)
    assert sql_balance(tron_settings, account_id) == 15 * 10**9


def test_below_minimum_is_recorded_then_credited_once_the_sum_reaches_it(tron_settings, fake):
    account_id, deposit_address = _customer(tron_settings)
    fake.chain(head=120, solid=110)
    small = fake.send(100, Log(deposit_address, 4 * USDT6))
    assert tron_watcher.scan(tron_settings).credited == 0
    assert _deposits(tron_settings) == [(small, 0, 4 * 10**9, "below_minimum")]
    fake.chain(head=140, solid=130)
    fake.send(120, Log(deposit_address, 6 * USDT6))
    assert tron_watcher.scan(tron_settings).credited == 2
    assert {status for *_rest, status in _deposits(tron_settings)} == {"credited"}
    assert sql_balance(tron_settings, account_id) == 10 * 10**9


def test_zero_amount_transfers_are_ignored(tron_settings, fake):
    _customer_id, deposit_address = _customer(tron_settings)
    fake.chain(head=120, solid=110)
    fake.send(100, Log(deposit_address, 0))
    assert tron_watcher.scan(tron_settings).found == 0
    assert _deposits(tron_settings) == []


def test_rate_limits_and_server_errors_are_retried_and_nothing_is_skipped(tron_settings, fake):
    account_id, deposit_address = _customer(tron_settings)
    fake.chain(head=120, solid=110)
    fake.send(100, Log(deposit_address, 11 * USDT6))
    fake.send(101, Log(deposit_address, 12 * USDT6))
    fake.fail("/walletsolidity/getnowblock", 502)
    fake.fail("/v1/accounts/", 429, times=2, retry_after="0")
    fake.fail("/walletsolidity/gettransactioninfobyid", 503, times=2, retry_after="0")
    fake.fail("/walletsolidity/getblock", 403, retry_after="0")  # TronGrid's over-the-limit answer
    report = tron_watcher.scan(tron_settings)
    assert (report.found, report.credited) == (2, 2)
    assert sql_balance(tron_settings, account_id) == 23 * 10**9
    assert len(fake.paths("/walletsolidity/getnowblock")) == 2
    assert len(fake.paths("/v1/accounts/")) == 3
    assert len(fake.paths("/walletsolidity/gettransactioninfobyid")) == 4


def test_a_node_that_keeps_failing_stops_the_scan_without_moving_the_cursor(tron_settings, fake):
    account_id, deposit_address = _customer(tron_settings)
    fake.chain(head=120, solid=110)
    fake.send(100, Log(deposit_address, 11 * USDT6))
    fake.fail("/v1/accounts/", 503, times=100, retry_after="0")
    with pytest.raises(TronUnavailable, match="HTTP 503"):
        tron_watcher.scan(tron_settings)
    assert _cursor(tron_settings) is None
    fake.failures.clear()
    assert tron_watcher.scan(tron_settings).credited == 1
    assert sql_balance(tron_settings, account_id) == 11 * 10**9


def test_a_lagging_solidity_node_delays_the_step_and_skips_nothing(tron_settings, fake):
    account_id, deposit_address = _customer(tron_settings)
    fake.chain(head=120, solid=110)
    txid = fake.send(100, Log(deposit_address, 11 * USDT6))
    fake.lagging.add(txid)
    report = tron_watcher.scan(tron_settings)
    assert (report.to_block, report.found) == (89, 0)
    assert _cursor(tron_settings) is None
    fake.lagging.clear()
    assert tron_watcher.scan(tron_settings).credited == 1
    assert sql_balance(tron_settings, account_id) == 11 * 10**9


def test_the_api_key_goes_in_the_header_and_nowhere_else(tron_env, fake, caplog):
    key = "3f5d2f4e-0000-4000-8000-tollgatekey1"
    settings = settings_module.load({**tron_env, "TOLLGATE_TRON_API_KEY": key})
    _customer_id, deposit_address = _customer(settings)
    fake.chain(head=120, solid=110)
    fake.send(100, Log(deposit_address, 11 * USDT6))
    fake.fail("/v1/accounts/", 429, retry_after="0")
    with caplog.at_level(logging.DEBUG):
        assert tron_watcher.scan(settings).credited == 1
    assert fake.requests and all(headers.get("TRON-PRO-API-KEY") == key for _path, headers in fake.requests)
    assert all(key not in path for path, _headers in fake.requests)
    assert "429" in caplog.text and key not in caplog.text
    assert key not in repr(settings)


def test_without_a_key_no_key_header_is_sent(tron_settings, fake):
    _customer(tron_settings)
    fake.chain(head=120, solid=110)
    tron_watcher.scan(tron_settings)
    assert fake.requests
    assert all("tron-pro-api-key" not in {name.lower() for name in headers} for _path, headers in fake.requests)


def test_first_scan_without_a_start_block_begins_at_the_solidified_head(tron_env, fake):
    env = {name: value for name, value in tron_env.items() if name != "TOLLGATE_TRON_START_BLOCK"}
    settings = settings_module.load(env)
    fake.chain(head=5000, solid=4980)
    report = tron_watcher.scan(settings)
    assert (report.from_block, report.to_block) == (4980, 4980)
    assert _cursor(settings) == 4981


def test_the_watch_scans_tron_less_often_than_evm_chains_by_default(settings):
    from control_plane.deposits.chain_watch import poll_seconds

    assert poll_seconds(settings, "tron") == 30
    assert poll_seconds(settings, "bsc") == poll_seconds(settings, "polygon") == 2


def test_a_watcher_told_to_stop_gives_its_nodes_retries_up_at_once(settings):
    """A TRON node that does not answer is retried for half a minute of backoff; a watcher told to
    stop (SIGTERM sets backoff.STOPPING) ends it at once, so `tollgate up` stops in a moment."""
    import time

    from control_plane.deposits import backoff
    from control_plane.deposits.trongrid import TronGrid

    dead = settings_module.load({"TOLLGATE_HOME": str(settings.home), "TOLLGATE_TRON_URL": "http://127.0.0.1:9"})
    backoff.STOPPING.set()
    try:
        started = time.monotonic()
        with pytest.raises(TronUnavailable, match="the watcher is stopping"):
            TronGrid(dead).solid_head()
        assert time.monotonic() - started < 5
    finally:
        backoff.STOPPING.clear()
