"""Fixtures of the EVM deposit tests: one anvil per session, and per test fresh USDT contracts on it
(18 decimals as BSC's, 6 as Polygon's), so tests never see each other's transfers."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins
from evm_node import AnvilNode, RpcProxy

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import accounts
from control_plane.deposits import addresses

MNEMONIC = "test test test test test test test test test test test junk"


@pytest.fixture(scope="session")
def evm_node():
    node = AnvilNode()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def evm_xpub() -> str:
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    return Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(0).PublicKey().ToExtended()


@dataclass
class EvmChains:
    """The test's view of the node: its USDT contracts, its environment, and helpers."""

    node: AnvilNode
    env: dict[str, str]
    usdt: dict[str, str]  # chain -> contract
    proxies: list[RpcProxy] = field(default_factory=list)

    def settings(self, **overrides: str) -> settings_module.Settings:
        return settings_module.load({**self.env, **overrides})

    def payer(self, email: str) -> tuple[int, str]:
        """A new account and its EVM deposit address."""
        settings = self.settings()
        with db.session_scope(settings) as session:
            account_id = accounts.create_account(session, email).id
            return account_id, addresses.address_for(session, settings, account_id, "bsc").address

    def pay(self, chain: str, *payments: tuple[str, int]):
        return self.node.transfer(self.usdt[chain], *payments)

    def proxy(self, rule, path: str = "/") -> RpcProxy:
        proxy = RpcProxy(self.node.url, rule, path)
        self.proxies.append(proxy)
        return proxy

    def through(self, proxy: RpcProxy) -> dict[str, str]:
        """Settings overrides that send both chains' RPC through the proxy."""
        return {"TOLLGATE_BSC_RPC_URL": proxy.url, "TOLLGATE_POLYGON_RPC_URL": proxy.url}


@pytest.fixture
def evm(tollgate_env, evm_node, evm_xpub):
    bsc, polygon = evm_node.deploy(18), evm_node.deploy(6)
    start = str(evm_node.head() + 1)
    env = {**tollgate_env, "TOLLGATE_XPUB_EVM": evm_xpub}
    for chain, contract in (("BSC", bsc), ("POLYGON", polygon)):
        env |= {f"TOLLGATE_{chain}_RPC_URL": evm_node.url, f"TOLLGATE_{chain}_USDT_CONTRACT": contract,
                f"TOLLGATE_{chain}_START_BLOCK": start, f"TOLLGATE_{chain}_CONFIRMATIONS": "3"}
    chains = EvmChains(evm_node, env, {"bsc": bsc, "polygon": polygon})
    yield chains
    for proxy in chains.proxies:
        proxy.stop()
