"""`tollgate deposit address` and `tollgate deposits list`."""
import json

import pytest
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins
from click.testing import CliRunner

from control_plane import db
from control_plane.accounts import accounts
from control_plane.cli.main import main
from control_plane.deposits import ledger as deposits

MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
TRON_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def _xpub(coin):
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    return Bip44.FromSeed(seed, coin).Purpose().Coin().Account(0).PublicKey().ToExtended()


@pytest.fixture(scope="module")
def xpubs():
    return {"TOLLGATE_XPUB_EVM": _xpub(Bip44Coins.ETHEREUM), "TOLLGATE_XPUB_TRON": _xpub(Bip44Coins.TRON)}


@pytest.fixture
def run(tollgate_env):
    def invoke(*args, env=None):
        return CliRunner().invoke(main, list(args), env={**tollgate_env, **(env or {})})
    return invoke


@pytest.fixture
def account_id(settings):
    with db.session_scope(settings) as session:
        return accounts.create_account(session, "cli@example.com").id


def test_deposit_address_for_one_chain_is_the_address_alone(run, settings, xpubs, account_id):
    result = run("deposit", "address", "cli@example.com", "--chain", "tron", env=xpubs)
    assert result.exit_code == 0, result.output
    address = result.stdout.strip()
    assert address.startswith("T") and len(address) == 34
    assert run("deposit", "address", "CLI@example.com", "--chain", "tron", env=xpubs).stdout.strip() == address


def test_deposit_address_lists_every_chain_bsc_and_polygon_shared(run, xpubs, account_id):
    result = run("deposit", "address", "cli@example.com", env=xpubs)
    assert result.exit_code == 0, result.output
    lines = dict(line.split() for line in result.stdout.strip().splitlines())
    assert set(lines) == {"tron", "bsc", "polygon"}
    assert lines["bsc"] == lines["polygon"] and lines["bsc"].startswith("0x")


def test_deposit_address_without_xpub_is_a_user_mistake(run, account_id):
    result = run("deposit", "address", "cli@example.com", "--chain", "bsc")
    assert result.exit_code == 2
    assert "TOLLGATE_XPUB_EVM is not set" in result.output


def test_deposit_address_of_unknown_email_is_a_user_mistake(run, xpubs):
    result = run("deposit", "address", "nobody@example.com", env=xpubs)
    assert result.exit_code == 2
    assert "no account" in result.output


def test_deposits_list_shows_status_and_exact_amount(run, settings, account_id):
    with db.session_scope(settings) as session:
        deposits.record_deposit(session, chain="tron", tx_hash="ab" * 32, log_index=0, account_id=account_id,
                                token_contract=TRON_USDT, amount=12_345_678, block_number=5, block_hash="c" * 64,
                                status="confirmed")
    result = run("deposits", "list")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.strip().splitlines()
    assert "tron" in line and "confirmed" in line and "$12.345678" in line and "cli@example.com" in line
    listed = json.loads(run("deposits", "list", "--json", "--email", "cli@example.com").stdout)
    assert [(item["amount_nano"], item["status"]) for item in listed] == [(12_345_678_000, "confirmed")]
    assert json.loads(run("deposits", "list", "--json", "--status", "credited").stdout) == []
