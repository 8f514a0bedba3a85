"""Watch-only deposit addresses: child 0/<account id> of an account-level xpub.

TOLLGATE_XPUB_EVM is the xpub of m/44'/60'/0' (one address per account, used on BSC and Polygon);
TOLLGATE_XPUB_TRON that of m/44'/195'/0'. Only public derivation happens here (bip_utils), so the
server never holds a key that can spend; the operator's wallet, offline, holds the seed.
"""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import ServiceError
from ..models import DepositAddress
from ..settings import Settings
from .tokens import CHAIN_FAMILY

XPUB_SETTING = {"evm": "TOLLGATE_XPUB_EVM", "tron": "TOLLGATE_XPUB_TRON"}
MAX_INDEX = 2**31 - 1  # non-hardened children only


@lru_cache(maxsize=8)
def _account_node(xpub: str):
    # Imported here: bip_utils takes ~0.2 s to import, which every CLI command would otherwise pay.
    from bip_utils import Bip32KeyError, Bip32Secp256k1

    try:
        node = Bip32Secp256k1.FromExtendedKey(xpub)
    except (Bip32KeyError, ValueError) as exc:
        raise ServiceError(f"not a valid extended public key: {exc}") from None
    if not node.IsPublicOnly():
        # An xprv would put a spending key on the server: refuse it outright.
        raise ServiceError("an extended *private* key was configured; give the xpub (watch-only) instead")
    return node


def derive(xpub: str, family: str, index: int) -> str:
    """The address of child 0/<index> of the xpub: EVM checksummed (0x…) or TRON base58 (T…)."""
    if not 0 <= index <= MAX_INDEX:
        raise ServiceError(f"address index must be within 0..{MAX_INDEX}, got {index}")
    from bip_utils import EthAddrEncoder, TrxAddrEncoder

    public_key = _account_node(xpub).DerivePath(f"0/{index}").PublicKey().KeyObject()
    if family == "evm":
        return EthAddrEncoder.EncodeKey(public_key)
    if family == "tron":
        return TrxAddrEncoder.EncodeKey(public_key)
    raise ServiceError(f"unknown address family {family!r}")


def xpub_for(settings: Settings, family: str) -> str:
    xpub = settings.xpub_evm if family == "evm" else settings.xpub_tron
    if not xpub:
        raise ServiceError(f"{XPUB_SETTING[family]} is not set; deposits on this chain are off")
    return xpub


def address_for(session: Session, settings: Settings, account_id: int, chain: str) -> DepositAddress:
    """The account's deposit address on `chain` (tron, bsc, polygon), stored on first use."""
    if chain not in CHAIN_FAMILY:
        raise ServiceError(f"unknown chain {chain!r}; one of {', '.join(CHAIN_FAMILY)}")
    family = CHAIN_FAMILY[chain]
    existing = _find(session, account_id, family)
    if existing is not None:
        return existing
    row = DepositAddress(account_id=account_id, family=family, index=account_id,
                         address=derive(xpub_for(settings, family), family, account_id))
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        existing = _find(session, account_id, family)
        if existing is None:
            raise
        return existing
    return row


def _find(session: Session, account_id: int, family: str) -> DepositAddress | None:
    return session.scalar(
        select(DepositAddress).where(DepositAddress.account_id == account_id, DepositAddress.family == family)
    )


def account_for_address(session: Session, family: str, address: str) -> int | None:
    """The account owning a deposit address (EVM compared case-insensitively), for watchers."""
    column = DepositAddress.address if family == "tron" else func.lower(DepositAddress.address)
    wanted = address.strip() if family == "tron" else address.strip().lower()
    return session.scalar(
        select(DepositAddress.account_id).where(DepositAddress.family == family, column == wanted)
    )
