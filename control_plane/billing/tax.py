"""The tax an invoice states: which rate applies to a customer, and how much of a tax-inclusive
total is tax.

Payments are tax-inclusive: what a customer paid is credited whole, and its invoice states the
tax contained in it. The rate is that of the first TOLLGATE_TAX_RULES entry for the customer's
country (their billing profile's), else of '*'. A customer in a reverse-charge country
(TOLLGATE_TAX_REVERSE_CHARGE; '*' for every one) who gave a tax id pays none: the invoice says so
in the operator's note instead. Integers only, rounded half-up (away from zero: a credit note's
negative total splits as its invoice's positive one does).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..models import BillingProfile
from ..settings import Settings


@dataclass(frozen=True)
class TaxTerms:
    rate: Decimal  # percent
    reverse_charge: bool
    note: str  # the reverse-charge note, or ""


def terms(settings: Settings, profile: BillingProfile | None) -> TaxTerms:
    """The tax terms of a customer with this billing profile (None: no profile yet)."""
    country = profile.country if profile is not None else ""
    tax_id = profile.tax_id if profile is not None else ""
    reverse = settings.reverse_charge_countries
    if tax_id and ("*" in reverse or (country and country in reverse)):
        return TaxTerms(Decimal(0), True, settings.reverse_charge_note)
    rate = next(percent for code, percent in settings.tax_rules if code in (country, "*"))
    return TaxTerms(rate, False, "")


def split_inclusive(total_nano: int, rate: Decimal) -> tuple[int, int]:
    """(net, tax) of a tax-inclusive total: net = total × 100 / (100 + rate), rounded half-up;
    tax = total − net."""
    numerator, denominator = Decimal(rate).as_integer_ratio()
    net = round_half_up(total_nano * 100 * denominator, 100 * denominator + numerator)
    return net, total_nano - net


def round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator (denominator > 0) to the nearest integer, halves away from zero."""
    magnitude = (2 * abs(numerator) + denominator) // (2 * denominator)
    return -magnitude if numerator < 0 else magnitude
