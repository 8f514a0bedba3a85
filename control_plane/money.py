"""Money as integer nano-USD; conversions to and from decimal USD text, never through floats."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from .usage_classes import USAGE_CLASSES

NANO_PER_USD = 1_000_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000
# (record field, price field) of each usage class (cost_nano runs for every usage record drained)
_FIELD_PRICES = tuple((usage.field, usage.price) for usage in USAGE_CLASSES)
# The bounds that keep the hot path's arithmetic exact (lua/tollgate/cost.lua): token counts per
# usage class of one request, prices per class (nano-USD per 1M tokens: $10,000).
MAX_TOKENS = 100_000_000
MAX_PRICE_NANO = 10_000_000_000_000



def usd_to_nano(value) -> int:
    """'42.5' -> 42_500_000_000. Rejects floats, more than 9 decimals, and non-numbers."""
    if isinstance(value, float):
        raise ValueError("amounts must be given as decimal text, not floats")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a USD amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a USD amount: {value!r}")
    nano = amount * NANO_PER_USD
    if nano != nano.to_integral_value():
        raise ValueError(f"{value!r} has more than 9 decimal places (1 nano-USD)")
    return int(nano)


def nano_to_decimal(nano: int) -> Decimal:
    """Exact decimal USD value of a nano-USD integer, normalized (42.5, not 42.500000000)."""
    value = Decimal(int(nano)).scaleb(-9)
    normalized = value.normalize()
    # normalize() turns 100 into 1E+2; keep plain notation.
    return normalized if normalized.as_tuple().exponent <= 0 else value.quantize(Decimal(1))


def money_fields(**amounts: int) -> dict:
    """{"x": exact USD, "x_nano": nano-USD} of each amount, as the APIs write money."""
    return {key: value for name, nano in amounts.items()
            for key, value in ((name, nano_to_decimal(nano)), (f"{name}_nano", nano))}


def format_usd(nano: int) -> str:
    """'$0.012345678' — the exact amount, at least two decimals."""
    value = nano_to_decimal(nano)
    text = format(value, "f")
    if "." not in text:
        text += ".00"
    elif len(text.split(".")[1]) < 2:
        text += "0"
    return ("-$" + text[1:]) if text.startswith("-") else "$" + text


def cost_nano(tokens: dict[str, int], prices: dict[str, int]) -> int:
    """Σ tokens × price (nano-USD per 1M tokens), rounded half-up once to the nano-dollar.

    `tokens` is keyed by usage record field (in, cr, …), `prices` by price field (input, …).
    """
    total = sum([int(tokens.get(field, 0)) * int(prices[price]) for field, price in _FIELD_PRICES])
    quotient, remainder = divmod(total, TOKENS_PER_PRICE_UNIT)
    if remainder * 2 >= TOKENS_PER_PRICE_UNIT:
        quotient += 1
    return quotient

