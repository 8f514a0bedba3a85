"""The platform fee on card top-ups (TOLLGATE_TOPUP_FEE_PERCENT = f; 0, none, by default).

A checkout for credit C charges C + F, F = C × f / 100 rounded half-up to the cent. The webhook
splits the total T it was paid back into C = T × 100 / (100 + f), rounded half-up, and F = T − C
(which gives back the C and F the checkout asked for). C is credited as a top-up (with its tier
bonus); F is a ledger transaction of its own, kind `fee`, under `fee:<the top-up's key>`, from
system:deposits to system:fees: it never reaches the wallet, so it is never refunded.
"""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy.orm import Session

from ..models import LedgerTransaction
from ..money import format_usd
from . import ledger
from .tax import round_half_up

FEES = "system:fees"


def fee_key(deposit_key: str) -> str:
    return f"fee:{deposit_key}"


def fee_cents(credit_cents: int, percent: Decimal) -> int:
    """The fee a checkout for this credit adds."""
    numerator, denominator = Decimal(percent).as_integer_ratio()
    return round_half_up(credit_cents * numerator, 100 * denominator)


def split_cents(total_cents: int, percent: Decimal) -> tuple[int, int]:
    """(credit, fee) of a paid total."""
    numerator, denominator = Decimal(percent).as_integer_ratio()
    credit = round_half_up(total_cents * 100 * denominator, 100 * denominator + numerator)
    return credit, total_cents - credit


def post_fee(session: Session, account_id: int, fee_nano: int, deposit_key: str,
             percent: Decimal, credit_nano: int) -> LedgerTransaction:
    """The fee of the top-up under deposit_key, once. Published: it moves no wallet, so Redis
    has nothing to apply."""
    return ledger.post(session, "fee", fee_key(deposit_key), account_id,
                       [(FEES, fee_nano), (ledger.DEPOSITS, -fee_nano)],
                       f"Card top-up fee {format(percent, 'f')}% on {format_usd(credit_nano)}", published=True)
