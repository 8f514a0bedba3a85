"""The console's Top up page against an instance of its own with deposit xpubs and card checkout:
the account's addresses (those GET /api/v1/deposits gives) with QR codes and their token contracts,
the minimum and bonus tiers, the checkout button, and the account's deposits with their state."""
import html
import re

import pytest
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins
from console_client import signed_in_client
from gateway_fixtures import _fresh_database
from harness import Gateway
from helpers import api_get
from test_deposits_addresses import MNEMONIC

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import accounts
from control_plane.deposits import ledger as deposits


def account_xpub(coin) -> str:
    """The account-level xpub of the BIP39 test mnemonic (m/44'/<coin>'/0')."""
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    return Bip44.FromSeed(seed, coin).Purpose().Coin().Account(0).PublicKey().ToExtended()


CHECKOUT = "https://pay.example.com/checkout?ref={account_id}&cents={amount_cents}"
DEAD_PORT_URL = "http://127.0.0.1:9"  # the TRON watcher's node: nothing listens, nothing leaves the machine


@pytest.fixture(scope="module")
def topup_gateway(tmp_path_factory, gateway_kind, mail_server):
    """An instance with both chains' xpubs, a card checkout and bonus tiers, shared by this file's
    tests (each signs in as an account of its own)."""
    with _fresh_database(gateway_kind) as url:
        gw = Gateway(tmp_path_factory.mktemp("topup"), url, {
            "TOLLGATE_SMTP_URL": mail_server.url, "TOLLGATE_XPUB_EVM": account_xpub(Bip44Coins.ETHEREUM),
            "TOLLGATE_XPUB_TRON": account_xpub(Bip44Coins.TRON),
            "TOLLGATE_TRON_URL": DEAD_PORT_URL, "TOLLGATE_PAYMENT_CHECKOUT_URL": CHECKOUT,
            "TOLLGATE_MIN_DEPOSIT_USD": "10", "TOLLGATE_TOPUP_BONUS_TIERS": "10:0,50:2,100:5.5"}).start()
        yield gw
        gw.stop()


def text_of(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def record(settings, account_id: int, chain: str, tx_hash: str, amount: int, status: str, contract: str) -> None:
    """A deposit as a watcher records it; a confirmed one is credited (or waits below the minimum)."""
    with db.session_scope(settings) as session:
        deposit = deposits.record_deposit(session, chain=chain, tx_hash=tx_hash, log_index=0, account_id=account_id,
                                          token_contract=contract, amount=amount, block_number=77,
                                          block_hash="0x" + "b" * 64, status=status)
        if status == "confirmed":
            deposits.credit_deposit(session, settings, deposit)


def test_topup_shows_the_accounts_addresses_tiers_and_deposits(topup_gateway, mail_server):
    client = signed_in_client(topup_gateway, mail_server)
    settings = settings_module.load(topup_gateway.env)
    with db.session_scope(settings) as session:
        account_id = accounts.require_by_email(session, client.email).id
    with db.session_scope(settings) as session:
        other = accounts.create_account(session, "other-topup@example.com").id
    record(settings, account_id, "polygon", "0x" + "1" * 64, 12_500_000, "seen",
           "0xc2132D05D31c914a87C6611C10748AEb04B58e8F")
    record(settings, account_id, "tron", "a" * 64, 25_000_000, "confirmed", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")
    record(settings, account_id, "bsc", "0x" + "2" * 64, 10**18, "confirmed", "0x55d398326f99059fF775485246999027B3197955")
    record(settings, other, "polygon", "0x" + "9" * 64, 99_000_000, "seen", "0xc2132D05D31c914a87C6611C10748AEb04B58e8F")

    page = client.get("/console/topup").text
    shown = text_of(page)
    key = topup_gateway.create_key(client.email)
    api_addresses = api_get(topup_gateway, key, "/api/v1/deposits")["addresses"]
    assert set(api_addresses) == {"tron", "bsc", "polygon"}
    for chain, address in api_addresses.items():
        section = re.search(rf'<section class="card offer" id="chain-{chain}".*?</section>', page, re.DOTALL).group(0)
        assert f'<code id="address-{chain}">{address}</code>' in section
        assert f'aria-label="QR code of {address}"' in section and "<path d=" in section
    assert "USDT (TRC-20) on TRON" in shown and "contract TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t" in shown
    assert "USDT (BEP-20) on BNB Smart Chain (BSC)" in shown
    assert "contract 0x55d398326f99059fF775485246999027B3197955" in shown
    assert "USDT on Polygon PoS" in shown and "contract 0xc2132D05D31c914a87C6611C10748AEb04B58e8F" in shown
    assert "does not watch BNB Smart Chain (BSC) yet" in shown  # no TOLLGATE_BSC_RPC_URL
    assert "does not watch TRON" not in shown
    assert "The minimum deposit is $10.00" in shown
    assert "$50.00 +2 %" in shown and "$100.00 +5.5 %" in shown and "$10.00 +0" not in shown
    assert "Pay by card" in shown

    assert "$12.50 seen, waiting for 40 confirmations" in shown and "0x" + "1" * 64 in shown
    assert "$25.00 credited" in shown and "a" * 64 in shown
    assert "$1.00 confirmed, below the $10.00 minimum" in shown
    assert "0x" + "9" * 64 not in shown and "$99.00" not in shown  # another account's deposit
    client.close()


def test_checkout_sends_the_customer_to_the_providers_page(topup_gateway, mail_server):
    client = signed_in_client(topup_gateway, mail_server)
    settings = settings_module.load(topup_gateway.env)
    with db.session_scope(settings) as session:
        account_id = accounts.require_by_email(session, client.email).id
    client.get("/console/topup")
    response = client.post_form("/console/topup/checkout", {"amount": "25.50"}, follow=False)
    assert response.status_code == 303
    assert response.headers["Location"] == f"https://pay.example.com/checkout?ref={account_id}&cents=2550"
    for amount, message in (("5", "The amount must be at least the minimum top-up of $10.00."), ("12.345", "whole cents"),
                            ("ten", "Give the amount in USD")):
        client.get("/console/topup")
        refused = client.post_form("/console/topup/checkout", {"amount": amount})
        assert message in text_of(refused.text)
    client.close()


def test_without_a_chain_or_checkout_the_page_says_so(gateway, mail_server):
    client = signed_in_client(gateway, mail_server)
    shown = text_of(client.get("/console/topup").text)
    assert "On-chain deposits are not configured on this server" in shown
    assert "Pay by card" not in shown and "No deposits yet." in shown
    client.close()
