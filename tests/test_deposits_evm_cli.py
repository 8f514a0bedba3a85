"""`tollgate chain scan` (progress bar, rescans, refusals), `tollgate chain watch` and its place in
`tollgate up`, against the local EVM node."""
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from click.testing import CliRunner
from evm_node import FINALITY_LAG
from helpers import redis_balance

from control_plane.cli.main import main
from control_plane.ops.supervisor import children

TOLLGATE = str(Path(sys.executable).parent / "tollgate")
USDT18 = 10**18


def _invoke(env, *args):
    return CliRunner().invoke(main, list(args), env=env)


def _run_with_a_terminal_on_stderr(argv, env) -> tuple[int, str, str]:
    """Run argv with stderr on a pseudo-terminal (progress bars draw only there); exit status,
    stdout, what the terminal showed."""
    primary, secondary = pty.openpty()
    shown = []

    def read():
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        result = subprocess.run(argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=secondary,
                                stdin=subprocess.DEVNULL, timeout=120)
    finally:
        os.close(secondary)
        reader.join(timeout=10)
        os.close(primary)
    return result.returncode, result.stdout.decode(), b"".join(shown).decode()


def test_chain_scan_draws_a_progress_bar_on_stderr_and_reports_on_stdout(evm):
    _, address = evm.payer("payer@example.com")
    evm.pay("bsc", (address, 20 * USDT18))
    evm.node.mine(FINALITY_LAG + 6)
    start = evm.settings().evm_chain("bsc").start_block
    head = evm.node.head()
    status, stdout, terminal = _run_with_a_terminal_on_stderr(
        [TOLLGATE, "chain", "scan", "--chain", "bsc"], {**evm.env, "TOLLGATE_BSC_LOG_RANGE": "3"})
    assert status == 0, terminal
    assert stdout == f"bsc: blocks {start}..{head}: 1 new deposits, 1 credited, 0 orphaned\n"
    total = head - start + 1
    assert f"bsc blocks  [{'#' * 36}]  {total}/{total}" in terminal


def test_chain_scan_from_an_earlier_block_credits_nothing_twice(evm, redis_client):
    account_id, address = evm.payer("payer@example.com")
    evm.pay("polygon", (address, 15 * 10**6))
    evm.node.mine(FINALITY_LAG)
    start = evm.settings().evm_chain("polygon").start_block
    first = _invoke(evm.env, "chain", "scan", "--chain", "polygon")
    assert first.exit_code == 0, first.output
    assert "1 new deposits, 1 credited" in first.stdout
    again = _invoke(evm.env, "chain", "scan", "--chain", "polygon", "--from-block", str(start - 3))
    assert again.exit_code == 0, again.output
    assert f"polygon: blocks {start - 3}.." in again.stdout and "0 new deposits, 0 credited" in again.stdout
    assert redis_balance(evm.settings(), redis_client, account_id) == 15 * 10**9


def test_chain_scan_with_disagreeing_decimals_is_refused_with_the_reason(evm):
    result = _invoke({**evm.env, "TOLLGATE_POLYGON_USDT_DECIMALS": "18"}, "chain", "scan", "--chain", "polygon")
    assert result.exit_code == 2
    assert "decimals() = 6, but TOLLGATE_POLYGON_USDT_DECIMALS is 18" in result.output


def test_chain_scan_of_an_unconfigured_chain_says_which_setting_is_missing(evm):
    env = {key: value for key, value in evm.env.items() if key != "TOLLGATE_BSC_RPC_URL"}
    result = _invoke(env, "chain", "scan", "--chain", "bsc")
    assert result.exit_code == 2
    assert "TOLLGATE_BSC_RPC_URL is not set" in result.output


def test_chain_scan_against_a_node_that_does_not_answer_exits_1_saying_so(evm):
    proxy = evm.proxy(lambda method, params: (503, {"Retry-After": "0"}, None))
    result = _invoke({**evm.env, **evm.through(proxy)}, "chain", "scan", "--chain", "bsc")
    assert result.exit_code == 1
    assert "bsc RPC eth_call(decimals) failed 6 times: HTTP 503" in result.output


def test_chain_watch_credits_a_confirmed_deposit_into_redis(evm, redis_client):
    account_id, address = evm.payer("payer@example.com")
    settings = evm.settings()
    env = {**os.environ, **evm.env, "TOLLGATE_CHAIN_POLL_SECONDS": "1"}
    watcher = subprocess.Popen([TOLLGATE, "chain", "watch"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        evm.pay("bsc", (address, 12 * USDT18))
        evm.node.mine(FINALITY_LAG)
        deadline = time.monotonic() + 60
        while redis_balance(settings, redis_client, account_id) == 0 and watcher.poll() is None:
            assert time.monotonic() < deadline, "the watcher credited nothing within 60 s"
            time.sleep(0.1)
        assert redis_balance(settings, redis_client, account_id) == 12 * 10**9
    finally:
        watcher.send_signal(signal.SIGTERM)
        _, log = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, log
    assert "watching deposits on bsc, polygon" in log
    assert "bsc: blocks" in log and "1 credited" in log


def test_tollgate_up_runs_a_chain_watcher_only_when_a_chain_is_configured(evm, tmp_path):
    def names(env):
        return [child.name for child in children(evm.settings(**env), tmp_path / "nginx.conf")]

    assert "chain-watch" in names({})
    assert "chain-watch" not in names({"TOLLGATE_BSC_RPC_URL": "", "TOLLGATE_POLYGON_RPC_URL": ""})


def test_a_malformed_usdt_contract_setting_is_refused_naming_the_variable(evm):
    result = _invoke({**evm.env, "TOLLGATE_BSC_USDT_CONTRACT": "0x55d398"}, "chain", "scan", "--chain", "bsc")
    assert result.exit_code == 2
    assert "TOLLGATE_BSC_USDT_CONTRACT must be a contract address (0x and 40 hex digits)" in result.output
