"""Tokens we accept, matched by contract address (never by symbol), and exact unit conversion.

1 USDT = 1 USD = 1e9 nano-USD. A token with d <= 9 decimals converts exactly (× 10^(9-d)). A token
with more (USDT on BSC: 18) is divided by 10^(d-9) and the remainder — less than one nano-USD —
is truncated, never rounded up: we never credit more than arrived. The dust stays visible in the
deposit's `amount` (base units).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ServiceError
from ..money import NANO_PER_USD
from ..settings import CANONICAL_USDT

NANO_DIGITS = 9


@dataclass(frozen=True)
class Token:
    chain: str
    contract: str
    symbol: str
    decimals: int


# The canonical USDT contracts (settings.CANONICAL_USDT). EVM contracts compare
# case-insensitively; TRON base58 exactly.
USDT = tuple(Token(chain, contract, "USDT", decimals) for chain, (contract, decimals) in CANONICAL_USDT.items())
CHAINS = ("tron", "bsc", "polygon")
CHAIN_FAMILY = {"tron": "tron", "bsc": "evm", "polygon": "evm"}


def _normal(chain: str, contract: str) -> str:
    return contract if chain == "tron" else contract.lower()


def accepted(settings) -> tuple[Token, ...]:
    """The allow-list in force: one USDT contract per chain, as configured (the canonical ones by
    default: TOLLGATE_TRON_USDT_CONTRACT, TOLLGATE_<BSC|POLYGON>_USDT_CONTRACT and _DECIMALS)."""
    configured = {chain.chain: Token(chain.chain, chain.usdt_contract, "USDT", chain.usdt_decimals)
                  for chain in settings.evm_chains}
    configured["tron"] = Token("tron", settings.tron_usdt_contract, "USDT", 6)
    return tuple(configured.get(token.chain, token) for token in USDT)


def token_for(chain: str, contract: str, allowed: tuple[Token, ...] = USDT) -> Token:
    """The accepted token at this contract on this chain; anything else is refused."""
    for token in allowed:
        if token.chain == chain and _normal(chain, token.contract) == _normal(chain, contract.strip()):
            return token
    raise ServiceError(f"{contract!r} is not an accepted token contract on {chain}")


def base_units_to_nano(amount: int, decimals: int) -> int:
    """Base units of a USD stablecoin as nano-USD: exact up to 9 decimals, sub-nano dust truncated above."""
    if type(amount) is not int or amount < 0:
        raise ValueError(f"token amounts are non-negative integers of base units, got {amount!r}")
    if decimals <= NANO_DIGITS:
        return amount * 10 ** (NANO_DIGITS - decimals)
    return amount // 10 ** (decimals - NANO_DIGITS)


def usd_to_base_units(usd_nano: int, decimals: int) -> int:
    """The inverse for whole nano-USD amounts (tests, fixtures)."""
    if decimals <= NANO_DIGITS:
        units, rest = divmod(usd_nano, 10 ** (NANO_DIGITS - decimals))
        if rest:
            raise ValueError("amount is finer than the token's smallest unit")
        return units
    return usd_nano * 10 ** (decimals - NANO_DIGITS)


assert NANO_PER_USD == 10**NANO_DIGITS
