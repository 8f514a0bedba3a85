"""The EVM deposit watcher against a real local node (anvil): confirmation, exact units, the
contract allow-list, several logs per transaction, re-orgs, restarts and rescans."""
import pytest
from evm_node import FINALITY_LAG
from helpers import redis_balance, sql_balance
from sqlalchemy import select

from control_plane import db
from control_plane.deposits import cursors, evm_watcher
from control_plane.errors import ServiceError
from control_plane.models import Deposit

USDT6 = 10**6
USDT18 = 10**18


def _deposits(settings) -> list[tuple[str, int, int, str]]:
    with db.session_scope(settings) as session:
        rows = session.scalars(select(Deposit).order_by(Deposit.id)).all()
        return [(row.chain, row.log_index, row.amount_nano, row.status) for row in rows]


@pytest.mark.parametrize(("chain", "amount", "nano"), [
    ("bsc", 12 * USDT18 + 345_678_901_234_567_891, 12_345_678_901),  # 18 decimals: sub-nano dust truncated
    ("polygon", 12_345_678, 12_345_678_000),  # 6 decimals: exact
])
def test_deposit_is_credited_once_at_finality_never_before(evm, redis_client, chain, amount, nano):
    account_id, address = evm.payer("payer@example.com")
    settings = evm.settings()
    evm.pay(chain, (address, amount))

    report = evm_watcher.scan(settings, chain=chain)
    assert (report.found, report.credited) == (1, 0)
    assert _deposits(settings) == [(chain, 0, nano, "seen")]
    evm.node.mine(FINALITY_LAG - 1)
    assert evm_watcher.scan(settings, chain=chain).credited == 0
    assert sql_balance(settings, account_id) == 0

    evm.node.mine(1)
    report = evm_watcher.scan(settings, chain=chain)
    assert (report.found, report.credited) == (0, 1)
    assert _deposits(settings) == [(chain, 0, nano, "credited")]
    assert sql_balance(settings, account_id) == nano
    assert redis_balance(settings, redis_client, account_id) == nano

    assert evm_watcher.scan(settings, chain=chain).credited == 0
    assert sql_balance(settings, account_id) == nano


def test_same_name_and_symbol_from_another_contract_is_ignored(evm):
    account_id, address = evm.payer("payer@example.com")
    fake = evm.node.deploy(18)
    evm.node.transfer(fake, (address, 500 * USDT18))
    evm.node.mine(FINALITY_LAG)
    report = evm_watcher.scan(evm.settings(), chain="bsc")
    assert (report.found, report.credited) == (0, 0)
    assert _deposits(evm.settings()) == []


def test_two_transfer_logs_in_one_transaction_are_two_deposits(evm):
    first_id, first = evm.payer("first@example.com")
    second_id, second = evm.payer("second@example.com")
    receipt = evm.pay("polygon", (first, 20 * USDT6), (second, 30 * USDT6), (first, 15 * USDT6))
    evm.node.mine(FINALITY_LAG)
    settings = evm.settings()
    report = evm_watcher.scan(settings, chain="polygon")
    assert (report.found, report.credited) == (3, 3)
    with db.session_scope(settings) as session:
        rows = session.scalars(select(Deposit).order_by(Deposit.log_index)).all()
        assert {row.tx_hash for row in rows} == {"0x" + bytes(receipt["transactionHash"]).hex()}
        assert [row.log_index for row in rows] == [log["logIndex"] for log in receipt["logs"]]
    assert (sql_balance(settings, first_id), sql_balance(settings, second_id)) == (35 * 10**9, 30 * 10**9)


def test_reorg_orphans_a_seen_deposit_which_is_never_credited(evm, redis_client):
    account_id, address = evm.payer("payer@example.com")
    settings = evm.settings()
    evm.pay("bsc", (address, 40 * USDT18))
    evm.node.mine(1)
    assert evm_watcher.scan(settings, chain="bsc").found == 1

    evm.node.reorg(2)  # the transfer's block and the one after it are replaced by empty blocks
    evm.node.mine(FINALITY_LAG)
    report = evm_watcher.scan(settings, chain="bsc")
    assert (report.found, report.orphaned, report.credited) == (0, 1, 0)
    assert _deposits(settings) == [("bsc", 0, 40 * 10**9, "orphaned")]
    evm.node.mine(FINALITY_LAG)
    assert evm_watcher.scan(settings, chain="bsc").credited == 0
    assert sql_balance(settings, account_id) == 0
    assert redis_balance(settings, redis_client, account_id) == 0


def test_a_transfer_mined_again_after_a_reorg_is_credited_in_its_new_block(evm):
    account_id, address = evm.payer("payer@example.com")
    settings = evm.settings()
    before = evm.node.rpc("evm_snapshot")
    first = evm.pay("polygon", (address, 20 * USDT6))
    assert evm_watcher.scan(settings, chain="polygon").found == 1

    evm.node.rpc("evm_revert", before)  # the re-org: the transfer's block is gone...
    evm.node.mine(1)
    again = evm.pay("polygon", (address, 20 * USDT6))  # ...and the same transaction is mined a block later
    assert (again["transactionHash"], again["blockNumber"]) == (first["transactionHash"], first["blockNumber"] + 1)
    evm.node.mine(FINALITY_LAG)
    report = evm_watcher.scan(settings, chain="polygon")
    assert (report.found, report.orphaned, report.credited) == (0, 0, 1)
    with db.session_scope(settings) as session:
        deposit = session.scalars(select(Deposit)).one()
        assert deposit.block_number == again["blockNumber"]
        assert deposit.block_hash == "0x" + bytes(again["blockHash"]).hex()
    assert sql_balance(settings, account_id) == 20 * 10**9


class Crash(Exception):
    pass


def test_restart_mid_scan_resumes_at_the_cursor_and_credits_nothing_twice(evm):
    account_id, address = evm.payer("payer@example.com")
    for amount in (11, 12, 13):
        evm.pay("polygon", (address, amount * USDT6))
        evm.node.mine(2)
    evm.node.mine(FINALITY_LAG)
    settings = evm.settings(TOLLGATE_POLYGON_LOG_RANGE="2")
    start = settings.evm_chain("polygon").start_block

    def crash_after_first_range(done, total):
        raise Crash

    with pytest.raises(Crash):
        evm_watcher.scan(settings, chain="polygon", progress=crash_after_first_range)
    with db.session_scope(settings) as session:
        assert cursors.next_block(session, "polygon") == start + 2
    assert [status for *_, status in _deposits(settings)] == ["seen"]  # the first range's, not yet credited

    report = evm_watcher.scan(settings, chain="polygon")
    assert report.from_block == start + 2
    assert (report.found, report.credited) == (2, 3)
    assert sql_balance(settings, account_id) == 36 * 10**9


def test_rescan_from_an_earlier_block_credits_nothing_twice(evm):
    account_id, address = evm.payer("payer@example.com")
    evm.pay("bsc", (address, 25 * USDT18))
    evm.node.mine(FINALITY_LAG)
    settings = evm.settings()
    start = settings.evm_chain("bsc").start_block
    assert evm_watcher.scan(settings, chain="bsc").credited == 1
    with db.session_scope(settings) as session:
        cursor = cursors.next_block(session, "bsc")

    earlier = max(start - 5, 0)  # a node started for this test may be only a few blocks high
    report = evm_watcher.scan(settings, chain="bsc", from_block=earlier, to_block=start + 3)
    assert (report.from_block, report.to_block, report.found, report.credited) == (earlier, start + 3, 0, 0)
    with db.session_scope(settings) as session:
        assert cursors.next_block(session, "bsc") == cursor  # a rescan never moves the cursor back
    assert sql_balance(settings, account_id) == 25 * 10**9


def test_decimals_that_disagree_with_the_contract_refuse_to_start(evm):
    settings = evm.settings(TOLLGATE_BSC_USDT_CONTRACT=evm.usdt["polygon"])  # 6 decimals; BSC expects 18
    with pytest.raises(ServiceError, match=r"decimals\(\) = 6, but TOLLGATE_BSC_USDT_DECIMALS is 18; refusing"):
        evm_watcher.scan(settings, chain="bsc")
    assert evm_watcher.scan(evm.settings(TOLLGATE_BSC_USDT_CONTRACT=evm.usdt["polygon"],
                                         TOLLGATE_BSC_USDT_DECIMALS="6"), chain="bsc").found == 0


def test_a_contract_address_without_a_token_refuses_to_start(evm):
    settings = evm.settings(TOLLGATE_POLYGON_USDT_CONTRACT="0x" + "12" * 20)
    with pytest.raises(ServiceError, match="no token contract there"):
        evm_watcher.scan(settings, chain="polygon")
