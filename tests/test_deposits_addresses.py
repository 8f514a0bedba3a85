"""Watch-only deposit addresses from account-level xpubs, checked against published vectors."""
import pytest
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Changes, Bip44Coins
from sqlalchemy import func, select

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import accounts
from control_plane.deposits import addresses
from control_plane.errors import ServiceError
from control_plane.models import DepositAddress

# The BIP39 test mnemonic; only here, to produce the xpubs. The server side never sees it.
MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"


def _account_level(coin):
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    return Bip44.FromSeed(seed, coin).Purpose().Coin().Account(0)


@pytest.fixture(scope="module")
def xpub_evm():
    return _account_level(Bip44Coins.ETHEREUM).PublicKey().ToExtended()  # m/44'/60'/0'


@pytest.fixture(scope="module")
def xpub_tron():
    return _account_level(Bip44Coins.TRON).PublicKey().ToExtended()  # m/44'/195'/0'


@pytest.fixture
def xpub_settings(tollgate_env, xpub_evm, xpub_tron):
    return settings_module.load({**tollgate_env, "TOLLGATE_XPUB_EVM": xpub_evm, "TOLLGATE_XPUB_TRON": xpub_tron})


def test_evm_child_0_is_the_published_address(xpub_evm):
    # m/44'/60'/0'/0/0 of the test mnemonic (MetaMask, Ian Coleman's BIP39 tool, …)
    assert addresses.derive(xpub_evm, "evm", 0) == "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"


def test_tron_children_are_the_published_addresses(xpub_tron):
    # m/44'/195'/0'/0/0 and /0/1 of the test mnemonic (TronLink, Ian Coleman's BIP39 tool)
    assert addresses.derive(xpub_tron, "tron", 0) == "TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH"
    assert addresses.derive(xpub_tron, "tron", 1) == "TSeJkUh4Qv67VNFwY8LaAxERygNdy6NQZK"


def test_derivation_from_the_xpub_equals_derivation_from_the_seed(xpub_evm):
    for index in (1, 7, 1000):
        child = _account_level(Bip44Coins.ETHEREUM).Change(Bip44Changes.CHAIN_EXT).AddressIndex(index)
        from_seed = child.PublicKey().ToAddress()
        assert addresses.derive(xpub_evm, "evm", index) == from_seed


def test_an_extended_private_key_is_refused():
    xprv = _account_level(Bip44Coins.ETHEREUM).PrivateKey().ToExtended()
    with pytest.raises(ServiceError, match="private"):
        addresses.derive(xprv, "evm", 0)


def test_a_garbage_xpub_is_refused():
    with pytest.raises(ServiceError, match="extended public key"):
        addresses.derive("xpub-not-really", "evm", 0)


def test_account_address_is_child_of_its_id_and_shared_by_bsc_and_polygon(xpub_settings, xpub_evm):
    with db.session_scope(xpub_settings) as session:
        account = accounts.create_account(session, "chain@example.com")
        bsc = addresses.address_for(session, xpub_settings, account.id, "bsc")
        polygon = addresses.address_for(session, xpub_settings, account.id, "polygon")
        tron = addresses.address_for(session, xpub_settings, account.id, "tron")
        assert bsc.id == polygon.id
        expected = addresses.derive(xpub_evm, "evm", account.id)
        assert (bsc.family, bsc.index, bsc.address) == ("evm", account.id, expected)
        assert tron.family == "tron" and tron.address.startswith("T")
        assert addresses.account_for_address(session, "evm", bsc.address.lower()) == account.id
        assert addresses.account_for_address(session, "tron", tron.address) == account.id
        assert session.scalar(select(func.count()).select_from(DepositAddress)) == 2


def test_missing_xpub_is_a_clear_error(settings):
    with db.session_scope(settings) as session:
        account = accounts.create_account(session, "nochain@example.com")
        with pytest.raises(ServiceError, match="TOLLGATE_XPUB_TRON is not set"):
            addresses.address_for(session, settings, account.id, "tron")
