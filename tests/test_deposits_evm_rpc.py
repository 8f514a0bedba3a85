"""The EVM watcher behind a provider that misbehaves (an RPC proxy in front of the local node):
no `finalized` tag, 429s, a node that keeps failing, refused getLogs ranges, secret URLs."""
import logging

import pytest
from helpers import sql_balance

from control_plane import db
from control_plane.deposits import cursors, evm_watcher
from control_plane.deposits.evm_rpc import RpcError

USDT6 = 10**6

NO_FINALIZED_TAG = (200, {}, {"code": -32602, "message": "invalid block tag finalized"})


def _no_finalized_tag(method, params):
    return NO_FINALIZED_TAG if method == "eth_getBlockByNumber" and params[0] == "finalized" else None


def _contiguous(ranges: list[tuple[int, int]]) -> tuple[int, int]:
    """The blocks the ranges cover, asserting they leave no gap."""
    ranges = sorted(set(ranges))
    for (_, previous_last), (first, _) in zip(ranges, ranges[1:], strict=False):
        assert first <= previous_last + 1, f"blocks {previous_last + 1}..{first - 1} were never read: {ranges}"
    return ranges[0][0], max(last for _, last in ranges)


def test_node_without_the_finalized_tag_confirms_by_depth(evm):
    account_id, address = evm.payer("payer@example.com")
    settings = evm.settings(**evm.through(evm.proxy(_no_finalized_tag)))  # TOLLGATE_*_CONFIRMATIONS=3
    evm.pay("polygon", (address, 10 * USDT6))
    evm.node.mine(2)
    assert evm_watcher.scan(settings, chain="polygon").credited == 0
    evm.node.mine(1)
    assert evm_watcher.scan(settings, chain="polygon").credited == 1
    assert sql_balance(settings, account_id) == 10 * 10**9


def test_429s_are_retried_after_a_pause_and_no_block_is_skipped(evm):
    account_id, address = evm.payer("payer@example.com")
    refusals = iter(range(3))

    def rate_limited(method, params):
        if method == "eth_getLogs" and next(refusals, None) is not None:
            return 429, {}, None
        return None

    proxy = evm.proxy(rate_limited)
    settings = evm.settings(TOLLGATE_BSC_LOG_RANGE="3", **evm.through(proxy))
    start = settings.evm_chain("bsc").start_block
    evm.node.mine(4)
    evm.pay("bsc", (address, 30 * 10**18))
    evm.node.mine(8)
    report = evm_watcher.scan(settings, chain="bsc")
    assert (report.found, report.credited) == (1, 1)
    assert sum(refused for method, _, refused in proxy.calls if method == "eth_getLogs") == 3
    assert _contiguous(proxy.log_ranges()) == (start, evm.node.head())
    assert sql_balance(settings, account_id) == 30 * 10**9


def test_a_node_that_keeps_failing_ends_the_scan_at_the_cursor_and_the_next_scan_resumes(evm):
    account_id, address = evm.payer("payer@example.com")
    evm.pay("polygon", (address, 12 * USDT6))
    start = evm.settings().evm_chain("polygon").start_block
    failing_from = start + 4
    evm.node.mine(3)
    evm.pay("polygon", (address, 13 * USDT6))  # at failing_from
    evm.node.mine(8)
    down = True

    def unavailable(method, params):
        if down and method == "eth_getLogs" and int(params[0]["fromBlock"], 16) >= failing_from:
            return 503, {"Retry-After": "0"}, None
        return None

    settings = evm.settings(TOLLGATE_POLYGON_LOG_RANGE="4", **evm.through(evm.proxy(unavailable)))
    with pytest.raises(RpcError, match="eth_getLogs failed 6 times: HTTP 503"):
        evm_watcher.scan(settings, chain="polygon")
    with db.session_scope(settings) as session:
        assert cursors.next_block(session, "polygon") == failing_from
    assert sql_balance(settings, account_id) == 0

    down = False
    report = evm_watcher.scan(settings, chain="polygon")
    assert (report.from_block, report.found, report.credited) == (failing_from, 1, 2)
    assert sql_balance(settings, account_id) == 25 * 10**9


def test_a_refused_getlogs_range_is_halved_until_the_node_takes_it(evm):
    account_id, address = evm.payer("payer@example.com")

    def at_most_two_blocks(method, params):
        if method == "eth_getLogs" and int(params[0]["toBlock"], 16) - int(params[0]["fromBlock"], 16) >= 2:
            return 200, {}, {"code": -32005, "message": "block range too large"}
        return None

    proxy = evm.proxy(at_most_two_blocks)
    settings = evm.settings(TOLLGATE_BSC_LOG_RANGE="8", **evm.through(proxy))
    start = settings.evm_chain("bsc").start_block
    for _ in range(3):
        evm.pay("bsc", (address, 10 * 10**18))
        evm.node.mine(2)
    evm.node.mine(4)
    report = evm_watcher.scan(settings, chain="bsc")
    assert (report.found, report.credited) == (3, 3)
    assert max(last - first + 1 for first, last in proxy.log_ranges()) == 2
    assert _contiguous(proxy.log_ranges()) == (start, evm.node.head())
    assert sql_balance(settings, account_id) == 30 * 10**9


def test_an_rpc_url_with_an_api_key_is_never_logged_or_shown(evm, caplog):
    secret = "k3y-0f-the-operator"
    proxy = evm.proxy(lambda method, params: (500, {"Retry-After": "0"}, None), path=f"/v2/{secret}")
    settings = evm.settings(**evm.through(proxy))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RpcError) as raised:
        evm_watcher.scan(settings, chain="bsc")
    assert "HTTP 500" in str(raised.value)
    assert secret not in str(raised.value) and secret not in repr(settings)
    assert "HTTP 500" in caplog.text and secret not in caplog.text
